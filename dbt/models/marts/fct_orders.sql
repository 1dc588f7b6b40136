with orders as (
    select * from {{ ref('stg_orders') }}
),

line_counts as (
    select
        order_id,
        count(*) as line_count,
        sum(order_quantity) as units
    from {{ ref('stg_order_lines') }}
    group by order_id
)

select
    orders.order_id,
    orders.order_number,
    orders.customer_id,
    orders.territory_id,
    orders.sales_person_id,
    orders.order_date,
    orders.due_date,
    orders.ship_date,
    orders.status,
    orders.sales_channel,
    coalesce(line_counts.line_count, 0) as line_count,
    coalesce(line_counts.units, 0) as units,
    orders.subtotal,
    orders.tax_amount,
    orders.freight,
    orders.total_due
from orders
left join line_counts on orders.order_id = line_counts.order_id
