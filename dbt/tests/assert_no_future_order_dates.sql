-- An order cannot be placed after the moment we load it.
select order_id, order_date
from {{ ref('fct_orders') }}
where order_date > cast({{ dbt.current_timestamp() }} as date)
