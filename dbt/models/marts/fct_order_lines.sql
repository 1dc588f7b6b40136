with lines as (
    select * from {{ ref('stg_order_lines') }}
),

orders as (
    select
        order_id,
        customer_id,
        order_date,
        sales_channel
    from {{ ref('stg_orders') }}
)

select
    lines.order_line_id,
    lines.order_id,
    orders.customer_id,
    lines.product_id,
    orders.order_date,
    orders.sales_channel,
    lines.order_quantity,
    lines.unit_price,
    lines.unit_price_discount,
    lines.line_total
from lines
inner join orders on lines.order_id = orders.order_id
