{#
  Fails for every row whose `column_name` lies outside [min_value, max_value] (either bound may be
  left out). Bounds are SQL expressions, so a date bound is written as a quoted literal or a macro.

  Stands in for dbt_utils.accepted_range (same arguments; dbt_utils adds `inclusive`, true by
  default). Dispatched as `dataops_accepted_range`, never `test_accepted_range`: dbt searches the
  root project first when a package dispatches, so a `default__test_accepted_range` here would
  replace the package's own implementation for every package that calls it.
#}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}
    {{ return(adapter.dispatch('dataops_accepted_range', 'adventureworks')(
        model, column_name, min_value, max_value)) }}
{% endtest %}

{% macro default__dataops_accepted_range(model, column_name, min_value, max_value) %}
select {{ column_name }} as out_of_range_value
from {{ model }}
where {{ column_name }} is not null
  and (
        1 = 0
    {%- if min_value is not none %}
        or {{ column_name }} < {{ min_value }}
    {%- endif %}
    {%- if max_value is not none %}
        or {{ column_name }} > {{ max_value }}
    {%- endif %}
  )
{% endmacro %}
