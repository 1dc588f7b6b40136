{#
  Fails when `model` and `compare_model` do not have the same number of rows.

  Stands in for dbt_utils.equal_rowcount (same arguments; dbt_utils adds `group_by_columns`).
  Dispatched as `dataops_equal_rowcount`, never `test_equal_rowcount`: dbt searches the root project
  first when a package dispatches, so a `default__test_equal_rowcount` here would replace the
  package's own implementation for every package that calls it.
#}
{% test equal_rowcount(model, compare_model) %}
    {{ return(adapter.dispatch('dataops_equal_rowcount', 'adventureworks')(model, compare_model)) }}
{% endtest %}

{% macro default__dataops_equal_rowcount(model, compare_model) %}
with model_rows as (
    select count(*) as row_count from {{ model }}
),
compare_rows as (
    select count(*) as row_count from {{ compare_model }}
)
select
    model_rows.row_count as model_row_count,
    compare_rows.row_count as compare_row_count
from model_rows
cross join compare_rows
where model_rows.row_count <> compare_rows.row_count
{% endmacro %}
