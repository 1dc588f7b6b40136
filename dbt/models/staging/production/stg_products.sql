with source as (
    select * from {{ source('production', 'Product') }}
),

renamed as (
    select
        "ProductID" as product_id,
        "Name" as product_name,
        "ProductNumber" as product_number,
        "ProductSubcategoryID" as product_subcategory_id,
        "Color" as color,
        "Size" as size,
        "ProductLine" as product_line,
        "Class" as class,
        "Style" as style,
        "StandardCost" as standard_cost,
        "ListPrice" as list_price,
        cast("SellStartDate" as date) as sell_start_date,
        cast("SellEndDate" as date) as sell_end_date,
        cast("DiscontinuedDate" as date) as discontinued_date,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
