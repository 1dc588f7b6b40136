with source as (
    select * from {{ source('production', 'ProductSubcategory') }}
),

renamed as (
    select
        "ProductSubcategoryID" as product_subcategory_id,
        "ProductCategoryID" as product_category_id,
        "Name" as product_subcategory_name,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
