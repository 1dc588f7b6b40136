-- Every order belongs to a known customer; an orphan would vanish from customer revenue.
select orders.order_id, orders.customer_id
from {{ ref('stg_orders') }} as orders
left join {{ ref('customer_analytics') }} as customers
    on orders.customer_id = customers.customer_id
where customers.customer_id is null
