"""The real-component fixtures work: a PostgreSQL database and an MLflow server on it."""

import sqlalchemy as sa


def test_postgres_database_is_fresh_and_writable(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x int)"))
        conn.execute(sa.text("INSERT INTO t VALUES (41)"))
        assert conn.execute(sa.text("SELECT x + 1 FROM t")).scalar() == 42
    engine.dispose()


def test_mlflow_server_on_postgres_records_a_run(mlflow_server) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    exp = client.create_experiment("fixture-check")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "m", 1.5, step=3)
    history = client.get_metric_history(run.info.run_id, "m")
    assert [(m.value, m.step) for m in history] == [(1.5, 3)]
