"""Splink's Spark backend for `deduplicate(records, db_api=...)`: what it needs and a
local session to try it on one machine (docs/slr_dedupe.md, "Scale and Spark").

Optional: pyspark and a Java runtime are not installed by default
(`bash scripts/install.sh --spark`). Nothing here imports pyspark at module level.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError

# local[2]: this machine's two cores; 1g: the driver JVM holds the record table and one
# chunk of pairs (digital_work, 5,000 records, ran in it).
LOCAL_CORES = 2
DRIVER_MEMORY = "1g"
# Spark's default 200 shuffle partitions make ~100 near-empty tasks per Splink query on
# one machine; a few per core is enough for one process.
SHUFFLE_PARTITIONS = 4


def missing() -> str | None:
    """Why the Spark backend cannot run here (one line), or None when it can."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (bash scripts/install.sh --spark)"
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home) / "bin" / "java" if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        return "no Java runtime (no java on PATH or in JAVA_HOME; bash scripts/install.sh --spark)"
    return None


def check_session(spark: Any) -> None:
    """Raise a one-line MigfwError when `spark` lacks what Splink needs: its similarity
    UDFs (the jar Splink ships, on `spark.jars`; without it Splink only logs a warning and
    the first comparison fails in Java) and a checkpoint folder (Splink writes its
    intermediate tables there as parquet)."""
    if not spark.catalog.functionExists("jaro_winkler"):
        raise MigfwError(
            "Spark session: Splink's jaro_winkler UDF is not registered; start the session "
            "with .config('spark.jars', splink.backends.spark.similarity_jar_location())"
        )
    if spark.sparkContext.getCheckpointDir() is None:
        raise MigfwError(
            "Spark session: no checkpoint folder (Splink writes intermediate tables there); "
            "call spark.sparkContext.setCheckpointDir(<folder>)"
        )


def local_session(folder: str | Path, cores: int = LOCAL_CORES,
                  driver_memory: str = DRIVER_MEMORY) -> Any:  # fmt: skip
    """A local Spark session for Splink on this machine: `local[cores]`, no web UI, the
    driver bound to 127.0.0.1 (no other network), Splink's UDF jar loaded, checkpoints,
    Spark's scratch files and warehouse in `folder` (the caller removes it after `.stop()`)."""
    reason = missing()
    if reason:
        raise MigfwError(f"Spark backend: {reason}")
    # The JVM picks the host's first non-loopback address unless told otherwise.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("migfw-dedupe")
        .config("spark.driver.memory", driver_memory)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
        .config("spark.jars", similarity_jar_location())
        .config("spark.local.dir", str(Path(folder) / "local"))
        # Else Spark makes spark-warehouse/ in the working directory.
        .config("spark.sql.warehouse.dir", str(Path(folder) / "warehouse"))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(str(Path(folder) / "checkpoints"))
    return spark


def spark_api(spark: Any) -> Any:
    """Splink's SparkAPI on `spark` (checked first: `check_session`), repartitioning
    into as many partitions as the session shuffles into (Splink's default is 200)."""
    from splink import SparkAPI

    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    api = SparkAPI(spark_session=spark, num_partitions_on_repartition=partitions)
    check_session(spark)  # after SparkAPI: it registers the UDFs from the jar
    return api


def jvm_pid(spark: Any) -> int | None:
    """PID of the session's JVM when this process launched it (local mode), else None."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    return proc.pid if proc is not None else None
