select contact_id, customer_id, email, '{{ invocation_id }}' as built_by
from {{ ref('stg_hubspot__contacts') }}
