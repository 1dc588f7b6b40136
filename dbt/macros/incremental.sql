{#
  Incremental marts (fct_orders, fct_order_lines, customer_analytics) rebuild only the rows whose
  source changed since the version they merge into was built, less a lookback
  (`incremental_lookback_days`) so that a row that reached the source late, with an older
  ModifiedDate than the newest one already built, is still picked up.

  `dataops run` copies the published version's marts into the candidate before the build and passes
  their watermark (the newest `modified_at` they hold) as `dataops_incremental_from`; dbt run by hand
  falls back to the watermark of the model's own table. A full refresh (`dataops run --full-refresh`,
  or no published version to start from) rebuilds every row.
#}
{% macro incremental_cutoff() -%}
    {%- set watermark = var('dataops_incremental_from', none) -%}
    {%- set lookback = -1 * (var('incremental_lookback_days') | int) -%}
    {%- if watermark -%}
        {{ dbt.dateadd('day', lookback, "cast('" ~ watermark ~ "' as " ~ dbt.type_timestamp() ~ ")") }}
    {%- else -%}
        (select {{ dbt.dateadd('day', lookback, 'max(built.modified_at)') }} from {{ this }} as built)
    {%- endif -%}
{%- endmacro %}

{#
  The later of two timestamps, the first never null: GREATEST is not in SQL Server before 2022.
#}
{% macro later_of(first, second) -%}
    case when {{ second }} > {{ first }} then {{ second }} else {{ first }} end
{%- endmacro %}

{#
  Checks that scale with the change. A data test that is valid on the changed rows alone says
  `where: "__changed_rows__"` (or adds `and __changed_rows__` to its own filter): in an incremental
  build that reads the rows whose `modified_at` is at or after the same cutoff the models merged
  from; in a full build every row. dbt renders a test's `where` when it parses the project, before
  any run has a cutoff, hence the placeholder, replaced here when the test runs (dbt's documented
  way to template `where`).
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') or '' -%}
    {%- if '__changed_rows__' in where -%}
        {%- set where = where | replace('__changed_rows__', changed_rows()) -%}
    {%- endif -%}
    {#- The relation itself when there is no filter: a test may read its schema and name. -#}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#
  The condition on an incremental mart's rows (its `modified_at`) that holds for the changed rows
  of an incremental build and for every row of a full one. Generic tests get it through
  `__changed_rows__`; a singular test that holds row by row writes it in its own filter.
#}
{% macro changed_rows() -%}
    {%- if var('dataops_incremental_from', none) -%}
        modified_at >= {{ incremental_cutoff() }}
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#
  dbt's is_incremental(), except where the project is compiled without a warehouse to ask whether
  the model's table exists (`dataops compile`, which passes --no-introspect, and SQLFluff's
  templater on its `lint` profile): there it renders the incremental SQL, which is the full
  build's plus the filters on what changed, so that validating and linting it covers both.
#}
{% macro is_incremental() -%}
    {%- if not execute -%}
        {{ return(false) }}
    {%- elif not flags.INTROSPECT or target.name == 'lint' -%}
        {{ return(model.config.materialized == 'incremental') }}
    {%- else -%}
        {{ return(dbt.is_incremental()) }}
    {%- endif -%}
{%- endmacro %}
