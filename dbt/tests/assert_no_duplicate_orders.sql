-- The same business order (SalesOrderNumber) loaded twice, under any id, would double-count revenue.
select order_number, count(*) as copies
from {{ ref('stg_orders') }}
group by order_number
having count(*) > 1
