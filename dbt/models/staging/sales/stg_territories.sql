with source as (
    select * from {{ source('sales', 'SalesTerritory') }}
),

renamed as (
    select
        "TerritoryID" as territory_id,
        "Name" as territory_name,
        "CountryRegionCode" as country_region_code,
        "Group" as territory_group,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
