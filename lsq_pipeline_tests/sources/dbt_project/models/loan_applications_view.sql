-- The same applications as a view: its SQL names the database by the DuckDB file's stem.
select * from {{ ref('loan_applications') }}
