{{
    config(
        materialized='incremental',
        unique_key='customer_id',
        incremental_strategy=('merge' if target.type == 'sqlserver' else 'delete+insert'),
        on_schema_change='fail'
    )
}}
-- Incremental: a customer is recomputed when its profile (customer, person, store, e-mail) or one
-- of its orders changed since the cutoff (macros/incremental.sql); every other row is kept as the
-- version it merges into has it. `modified_at` is the latest of those changes.
with profiles as (
    select * from {{ ref('int_customer_profiles') }}
),

metrics as (
    select * from {{ ref('int_customer_metrics') }}
),

{% if is_incremental() %}
    changed_customers as (
        select profiles.customer_id from profiles
        where profiles.profile_modified_at >= {{ incremental_cutoff() }}
        union
        select metrics.customer_id from metrics
        where metrics.orders_modified_at >= {{ incremental_cutoff() }}
    ),
{% endif %}

joined as (
    select
        profiles.customer_id,
        profiles.customer_type,
        profiles.customer_name,
        profiles.contact_name,
        profiles.email,
        profiles.person_id,
        profiles.store_id,
        profiles.territory_id,
        metrics.first_order_date,
        metrics.last_order_date,
        coalesce(metrics.order_count, 0) as order_count,
        -- A customer who never ordered is worth exactly nothing so far, not "unknown".
        coalesce(metrics.lifetime_value, 0) as lifetime_value,
        {{ later_of('profiles.profile_modified_at', 'metrics.orders_modified_at') }} as modified_at
    from profiles
    left join metrics on profiles.customer_id = metrics.customer_id
    {% if is_incremental() %}
        where profiles.customer_id in (select changed_customers.customer_id from changed_customers)
    {% endif %}
),

segmented as (
    select
        *,
        case
            when lifetime_value >= {{ var('high_value_threshold') }} then 'High Value'
            when lifetime_value >= {{ var('medium_value_threshold') }} then 'Medium Value'
            else 'Low Value'
        end as customer_segment
    from joined
)

select * from segmented
