-- Revenue is never negative: no order total and no order line below zero. A refund in
-- AdventureWorks is a separate document, never a negative order. Row by row: an incremental
-- build checks its changed orders and lines.
select 'order' as grain, order_id as id, total_due as amount
from {{ ref('fct_orders') }}
where (total_due < 0 or subtotal < 0 or tax_amount < 0 or freight < 0) and {{ changed_rows() }}

union all

select 'order line' as grain, order_line_id as id, line_total as amount
from {{ ref('fct_order_lines') }}
where line_total < 0 and {{ changed_rows() }}
