{#
  Fails for every non-null value of `column_name` in which the regular expression finds no match.
  The pattern is searched, as in PostgreSQL's `~`: anchor it with ^...$ to match whole values.
  Regular expressions are engine-specific SQL, hence one implementation per engine.

  Stands in for dbt_expectations.expect_column_values_to_match_regex. Dispatched as
  `dataops_matches_regex`, never `test_matches_regex`: dbt searches the root project first when a
  package dispatches, so a `default__test_matches_regex` here would replace the package's own
  implementation for every package that calls it.
#}
{% test matches_regex(model, column_name, regex) %}
    {{ return(adapter.dispatch('dataops_matches_regex', 'adventureworks')(model, column_name, regex)) }}
{% endtest %}

{% macro _regex_failures(model, column_name, no_match_condition) %}
select {{ column_name }} as non_matching_value
from {{ model }}
where {{ column_name }} is not null
  and {{ no_match_condition }}
{% endmacro %}

{% macro duckdb__dataops_matches_regex(model, column_name, regex) %}
    {{ adventureworks._regex_failures(
        model, column_name, "not regexp_matches(" ~ column_name ~ ", '" ~ regex ~ "')") }}
{% endmacro %}

{% macro postgres__dataops_matches_regex(model, column_name, regex) %}
    {{ adventureworks._regex_failures(model, column_name, column_name ~ " !~ '" ~ regex ~ "'") }}
{% endmacro %}

{% macro sqlserver__dataops_matches_regex(model, column_name, regex) %}
    {# REGEXP_LIKE is SQL Server 2025 / Azure SQL; older servers have no regular expressions. #}
    {{ adventureworks._regex_failures(
        model, column_name, "regexp_like(" ~ column_name ~ ", '" ~ regex ~ "') = 0") }}
{% endmacro %}
