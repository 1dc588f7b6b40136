-- Order history per customer. Only customers with at least one order appear here; the mart decides
-- what "no orders" means (zero lifetime value), not this model.
with orders as (
    select * from {{ ref('stg_orders') }}
),

customer_orders as (
    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as order_count,
        sum(total_due) as lifetime_value,
        -- When the customer's orders last changed: what an incremental customer_analytics keys on.
        max(modified_at) as orders_modified_at
    from orders
    group by customer_id
)

select * from customer_orders
