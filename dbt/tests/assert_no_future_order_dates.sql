-- An order cannot be placed after the moment we load it. Row by row, and an order date only
-- falls further behind the clock: an incremental build checks its changed orders.
select order_id, order_date
from {{ ref('fct_orders') }}
where order_date > cast({{ dbt.current_timestamp() }} as date)
    and {{ changed_rows() }}
