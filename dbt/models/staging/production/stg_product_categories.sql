with source as (
    select * from {{ source('production', 'ProductCategory') }}
),

renamed as (
    select
        "ProductCategoryID" as product_category_id,
        "Name" as product_category_name,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
