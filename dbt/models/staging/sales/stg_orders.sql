with source as (
    select * from {{ source('sales', 'SalesOrderHeader') }}
),

renamed as (
    select
        "SalesOrderID" as order_id,
        "SalesOrderNumber" as order_number,
        "CustomerID" as customer_id,
        "SalesPersonID" as sales_person_id,
        "TerritoryID" as territory_id,
        cast("OrderDate" as date) as order_date,
        cast("DueDate" as date) as due_date,
        cast("ShipDate" as date) as ship_date,
        "Status" as status_code,
        case "Status"
            when 1 then 'In process'
            when 2 then 'Approved'
            when 3 then 'Backordered'
            when 4 then 'Rejected'
            when 5 then 'Shipped'
            when 6 then 'Cancelled'
        end as status,
        case when cast("OnlineOrderFlag" as int) = 1 then 'online' else 'reseller' end as sales_channel,
        "SubTotal" as subtotal,
        "TaxAmt" as tax_amount,
        "Freight" as freight,
        "TotalDue" as total_due,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
