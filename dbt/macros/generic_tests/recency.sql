{#
  Fails when the newest value of `column_name` is older than `interval_days` days, i.e. nothing has been
  modified recently. Portable through dbt's cross-database macros; engines override only if needed.
#}
{% test recency(model, column_name, interval_days) %}
    {{ return(adapter.dispatch('test_recency', 'adventureworks')(model, column_name, interval_days)) }}
{% endtest %}

{% macro default__test_recency(model, column_name, interval_days) %}
with newest as (
    select max({{ column_name }}) as most_recent
    from {{ model }}
)
select most_recent
from newest
where most_recent is null
   or most_recent < {{ dbt.dateadd('day', -1 * interval_days | int, dbt.current_timestamp()) }}
{% endmacro %}
