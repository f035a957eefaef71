-- The loan applications the CRM sync reads: one row per application, typed as dbt seeded them.
select application_id, applicant_name, email, phone, product, amount, stage, owner_email, created_at, updated_at
from {{ ref('loan_application_rows') }}
