with source as (
    select * from {{ source('sales', 'Customer') }}
),

renamed as (
    select
        "CustomerID" as customer_id,
        "PersonID" as person_id,
        "StoreID" as store_id,
        "TerritoryID" as territory_id,
        "AccountNumber" as account_number,
        case when "StoreID" is null then 'individual' else 'store' end as customer_type,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
