with source as (
    select * from {{ source('person', 'Person') }}
),

renamed as (
    select
        "BusinessEntityID" as person_id,
        "PersonType" as person_type,
        "Title" as title,
        "FirstName" as first_name,
        "MiddleName" as middle_name,
        "LastName" as last_name,
        "Suffix" as suffix,
        {{ dbt.concat(['"FirstName"', "' '", '"LastName"']) }} as full_name,
        "EmailPromotion" as email_promotion,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
