{#
  Fails when `column_name` is missing from the relation or its type is not of `type_family`
  (integer, numeric, string, date or timestamp). Read from information_schema, which all three
  engines have, so it needs no connection at compile time; the type names differ per engine.

  Stands in for dbt_expectations.expect_column_values_to_be_in_type_list (which takes engine type
  names, not families). Dispatched as `dataops_column_type`, never `test_column_type`: dbt searches
  the root project first when a package dispatches, so a `default__test_column_type` here would
  replace the package's own implementation for every package that calls it.
#}
{% test column_type(model, column_name, type_family) %}
    {{ return(adapter.dispatch('dataops_column_type', 'adventureworks')(model, column_name, type_family)) }}
{% endtest %}

{% macro default__dataops_column_type(model, column_name, type_family) %}
{%- set type_patterns = adventureworks.column_type_patterns()[type_family] -%}
with expected as (
    select '{{ column_name }}' as column_name
),
actual as (
    select lower(data_type) as data_type
    from information_schema.columns
    where lower(table_schema) = lower('{{ model.schema }}')
      and lower(table_name) = lower('{{ model.identifier }}')
      and lower(column_name) = lower('{{ column_name }}')
)
select expected.column_name, actual.data_type
from expected
left join actual on 1 = 1
where actual.data_type is null
   or not (
    {%- for pattern in type_patterns %}
        {{ 'or ' if not loop.first }}actual.data_type like '{{ pattern }}'
    {%- endfor %}
   )
{% endmacro %}

{% macro column_type_patterns() %}
    {{ return(adapter.dispatch('column_type_patterns', 'adventureworks')()) }}
{% endmacro %}

{% macro duckdb__column_type_patterns() %}
    {{ return({
        'integer': ['tinyint', 'smallint', 'integer', 'bigint', 'hugeint'],
        'numeric': ['decimal%', 'numeric%'],
        'string': ['varchar%'],
        'date': ['date'],
        'timestamp': ['timestamp%'],
    }) }}
{% endmacro %}

{% macro postgres__column_type_patterns() %}
    {{ return({
        'integer': ['smallint', 'integer', 'bigint'],
        'numeric': ['numeric'],
        'string': ['character varying', 'text', 'character'],
        'date': ['date'],
        'timestamp': ['timestamp%'],
    }) }}
{% endmacro %}

{% macro sqlserver__column_type_patterns() %}
    {{ return({
        'integer': ['tinyint', 'smallint', 'int', 'bigint'],
        'numeric': ['decimal', 'numeric', 'money'],
        'string': ['varchar', 'nvarchar', 'char', 'nchar'],
        'date': ['date'],
        'timestamp': ['datetime', 'datetime2', 'datetimeoffset'],
    }) }}
{% endmacro %}
