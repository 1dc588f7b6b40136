{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy=('merge' if target.type == 'sqlserver' else 'delete+insert'),
        on_schema_change='fail'
    )
}}
-- Incremental: an order is rebuilt when its header or one of its lines changed since the cutoff
-- (macros/incremental.sql); `modified_at` is the later of the two, the watermark of the next run.
with orders as (
    select * from {{ ref('stg_orders') }} as source_orders
    {% if is_incremental() %}
        where
            source_orders.modified_at >= {{ incremental_cutoff() }}
            or source_orders.order_id in (
                select changed_lines.order_id from {{ ref('stg_order_lines') }} as changed_lines
                where changed_lines.modified_at >= {{ incremental_cutoff() }}
            )
    {% endif %}
),

line_counts as (
    select
        order_id,
        count(*) as line_count,
        sum(order_quantity) as units,
        max(modified_at) as lines_modified_at
    from {{ ref('stg_order_lines') }} as source_lines
    {% if is_incremental() %}
        where source_lines.order_id in (select orders.order_id from orders)
    {% endif %}
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
    orders.total_due,
    {{ later_of('orders.modified_at', 'line_counts.lines_modified_at') }} as modified_at
from orders
left join line_counts on orders.order_id = line_counts.order_id
