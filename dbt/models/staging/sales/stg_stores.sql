with source as (
    select * from {{ source('sales', 'Store') }}
),

renamed as (
    select
        "BusinessEntityID" as store_id,
        "Name" as store_name,
        "SalesPersonID" as sales_person_id,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
