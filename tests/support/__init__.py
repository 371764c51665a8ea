"""Helpers shared by the test packages (no tests here): real servers, study requests, data.

- `postgres`: the PostgreSQL server the tests use (fresh databases are made by conftest's
  `postgres_db` fixture);
- `mlflow_server`: a real `mlflow server` process;
- `markers`: which marker a test that starts a real component must carry, and the check;
- `study`: tiny spaces, study requests, worker processes, read-back of trials;
- `house_prices`: a regression CSV with large raw values.
"""
