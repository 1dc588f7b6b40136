with source as (
    select * from {{ source('person', 'EmailAddress') }}
),

renamed as (
    select
        "EmailAddressID" as email_address_id,
        "BusinessEntityID" as person_id,
        "EmailAddress" as email_address,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
