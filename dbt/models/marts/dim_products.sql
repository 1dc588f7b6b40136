with products as (
    select * from {{ ref('stg_products') }}
),

subcategories as (
    select * from {{ ref('stg_product_subcategories') }}
),

categories as (
    select * from {{ ref('stg_product_categories') }}
)

select
    products.product_id,
    products.product_name,
    products.product_number,
    subcategories.product_subcategory_name,
    categories.product_category_name,
    products.color,
    products.size,
    products.product_line,
    products.standard_cost,
    products.list_price,
    products.sell_start_date,
    products.sell_end_date,
    case when products.list_price > 0 then 'sold' else 'component' end as product_kind
from products
left join subcategories on products.product_subcategory_id = subcategories.product_subcategory_id
left join categories on subcategories.product_category_id = categories.product_category_id
