{#
  Layers land in schemas named after the layer (staging, intermediate, marts) rather than dbt's
  default `<target schema>_<layer>`: each environment has its own database, so the prefix would only
  make the names consumers query differ between environments.

  The marts are the exception: dbt builds them into the candidate schema (`dataops_marts_schema`,
  `marts__candidate` unless dataops says otherwise), which no consumer reads. `dataops run` tests and
  audits the candidate and only then publishes it as a version of the consumer schema, all marts at
  once. A dbt command run by hand therefore never touches what consumers read either.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif custom_schema_name | trim == 'marts' -%}
        {{ var('dataops_marts_schema', 'marts__candidate') }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
