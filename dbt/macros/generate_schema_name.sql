{#
  Layers land in schemas named after the layer (staging, intermediate, marts) rather than dbt's
  default `<target schema>_<layer>`: each environment has its own database, so the prefix would only
  make the names consumers query differ between environments.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
