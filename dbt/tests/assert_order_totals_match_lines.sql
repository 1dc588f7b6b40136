-- An order's totals agree with its lines: SubTotal is the sum of the line totals (to the cent,
-- as in AdventureWorks, where SubTotal is stored to 4 decimals and LineTotal to 6), and
-- TotalDue is exactly SubTotal + TaxAmt + Freight. A disagreement means the header and the lines
-- describe different orders, and revenue depends on which one a report reads.
with line_totals as (
    select order_id, sum(line_total) as lines_total
    from {{ ref('stg_order_lines') }}
    group by order_id
)

select
    orders.order_id,
    orders.subtotal,
    line_totals.lines_total,
    orders.total_due
from {{ ref('stg_orders') }} as orders
inner join line_totals on orders.order_id = line_totals.order_id
where abs(orders.subtotal - line_totals.lines_total) > 0.01
   or orders.total_due <> orders.subtotal + orders.tax_amount + orders.freight
