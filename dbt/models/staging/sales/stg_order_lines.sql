with source as (
    select * from {{ source('sales', 'SalesOrderDetail') }}
),

renamed as (
    select
        "SalesOrderDetailID" as order_line_id,
        "SalesOrderID" as order_id,
        "ProductID" as product_id,
        "SpecialOfferID" as special_offer_id,
        "CarrierTrackingNumber" as carrier_tracking_number,
        "OrderQty" as order_quantity,
        "UnitPrice" as unit_price,
        "UnitPriceDiscount" as unit_price_discount,
        "LineTotal" as line_total,
        "ModifiedDate" as modified_at
    from source
)

select * from renamed
