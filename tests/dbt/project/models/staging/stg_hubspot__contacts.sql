select id as contact_id, customer_id, email, '{{ invocation_id }}' as built_by
from {{ source('hubspot', 'contacts') }}
