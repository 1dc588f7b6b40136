with profiles as (
    select * from {{ ref('int_customer_profiles') }}
),

metrics as (
    select * from {{ ref('int_customer_metrics') }}
),

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
        coalesce(metrics.lifetime_value, 0) as lifetime_value
    from profiles
    left join metrics on profiles.customer_id = metrics.customer_id
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
