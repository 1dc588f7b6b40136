select
    territory_id,
    territory_name,
    country_region_code,
    territory_group
from {{ ref('stg_territories') }}
