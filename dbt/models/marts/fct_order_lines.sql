{{
    config(
        materialized='incremental',
        unique_key='order_line_id',
        incremental_strategy=('merge' if target.type == 'sqlserver' else 'delete+insert'),
        on_schema_change='fail'
    )
}}
-- Incremental: a line is rebuilt when it changed since the cutoff (macros/incremental.sql), or its
-- order did (the line carries the order's customer, date and channel). `modified_at` is the later of
-- the line's and its order's, so that every line a build merges is one of its changed rows, which
-- the changed-rows tests read.
with orders as (
    select
        order_id,
        customer_id,
        order_date,
        sales_channel,
        modified_at
    from {{ ref('stg_orders') }}
),

lines as (
    select * from {{ ref('stg_order_lines') }} as source_lines
    {% if is_incremental() %}
        where
            source_lines.modified_at >= {{ incremental_cutoff() }}
            or source_lines.order_id in (
                select orders.order_id from orders
                where orders.modified_at >= {{ incremental_cutoff() }}
            )
    {% endif %}
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
    lines.line_total,
    {{ later_of('lines.modified_at', 'orders.modified_at') }} as modified_at
from lines
inner join orders on lines.order_id = orders.order_id
