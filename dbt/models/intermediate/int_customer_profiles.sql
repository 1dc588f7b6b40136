-- Who each customer is: the store's name for store customers, the person's name for individuals,
-- and the e-mail of the customer's person. Stores without a contact person have no e-mail at all in
-- AdventureWorks; that stays null rather than being invented.
with customers as (
    select * from {{ ref('stg_customers') }}
),

people as (
    select * from {{ ref('stg_people') }}
),

stores as (
    select * from {{ ref('stg_stores') }}
),

-- A person may hold several addresses; the first one registered is the one we contact.
ranked_emails as (
    select
        person_id,
        email_address,
        modified_at,
        row_number() over (partition by person_id order by email_address_id) as email_rank
    from {{ ref('stg_email_addresses') }}
),

primary_emails as (
    select
        person_id,
        email_address,
        modified_at
    from ranked_emails
    where email_rank = 1
),

profiles as (
    select
        customers.customer_id,
        customers.customer_type,
        customers.person_id,
        customers.store_id,
        customers.territory_id,
        customers.account_number,
        coalesce(stores.store_name, people.full_name) as customer_name,
        people.full_name as contact_name,
        primary_emails.email_address as email,
        customers.modified_at,
        -- When any row this profile is made of last changed (the customer, its person, store or
        -- e-mail): what an incremental customer_analytics keys on.
        {{ later_of(later_of(later_of('customers.modified_at', 'people.modified_at'), 'stores.modified_at'),
            'primary_emails.modified_at') }} as profile_modified_at
    from customers
    left join people on customers.person_id = people.person_id
    left join stores on customers.store_id = stores.store_id
    left join primary_emails on customers.person_id = primary_emails.person_id
)

select * from profiles
