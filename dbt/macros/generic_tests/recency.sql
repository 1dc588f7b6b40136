{#
  Fails when the newest value of `column_name` is older than `interval_days` days, i.e. nothing has been
  modified recently. Portable through dbt's cross-database macros; engines override only if needed.

  A stale table is one finding about the whole table, not about a row, so the test reports how old
  it is: `fail_calc` makes dbt's "failures" the age in days of the newest value (-1 when there is no
  value at all), and 0 when the table is fresh. `dataops` reads it back as "N days old".

  Stands in for dbt_utils.recency (which takes field, datepart and interval instead, and reports
  rows, not an age). Dispatched as `dataops_recency`, never `test_recency`: dbt searches the root
  project first when a package dispatches, so a `default__test_recency` here would replace the
  package's own implementation for every package that calls it.
#}
{% test recency(model, column_name, interval_days) %}
    {#- meta keeps the rendered limit for the message; the test's kwargs keep only the unrendered var() -#}
    {{ config(fail_calc="coalesce(max(days_old), 0)", meta={"interval_days": interval_days | int}) }}
    {{ return(adapter.dispatch('dataops_recency', 'adventureworks')(model, column_name, interval_days)) }}
{% endtest %}

{% macro default__dataops_recency(model, column_name, interval_days) %}
with newest as (
    select max({{ column_name }}) as most_recent
    from {{ model }}
)
select
    coalesce({{ dbt.datediff('most_recent', dbt.current_timestamp(), 'day') }}, -1) as days_old
from newest
where most_recent is null
   or most_recent < {{ dbt.dateadd('day', -1 * interval_days | int, dbt.current_timestamp()) }}
{% endmacro %}
