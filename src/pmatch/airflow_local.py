"""`make airflow` and `make airflow-stop`: Airflow and the embedded S3 server in the background."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_AIRFLOW_PORT = 8080
AIRFLOW_USER = "admin"
# Airflow's standalone writes the generated password of AIRFLOW_USER here (SimpleAuthManager's
# get_generated_password_file, with [core] simple_auth_manager_passwords_file unset).
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
# The first start creates the metadata DB, which takes a minute on a busy 2-core machine.
AIRFLOW_STARTUP_TIMEOUT_SECONDS = 300.0
S3_STARTUP_TIMEOUT_SECONDS = 60.0
# Seconds a stopped process may take to exit on SIGTERM before it gets SIGKILL. The
# scheduler waits for running tasks when terminated; a training task does not end on its own.
STOP_TIMEOUT_SECONDS = 20.0
# What `serve-s3` prints once the server answers; `start` waits for it.
S3_READY_MESSAGE = "pmatch S3 server ready on"

# Bounds for a small machine. LocalExecutor forks [core] parallelism worker processes at its
# first task (32 by default, each a copy of the scheduler), and each running task is a
# TensorFlow process; two at a time fill two cores. One DAG-file parser and one API worker
# suffice for two DAG files and one user. Set the variable to change a bound.
SMALL_MACHINE_DEFAULTS = {
    "AIRFLOW__CORE__PARALLELISM": "2",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__API__WORKERS": "1",
}


class LocalAirflowError(RuntimeError):
    """Airflow or the S3 server could not be started or stopped; the message says why."""


def airflow_port(environ: dict[str, str] | None = None) -> int:
    """The API server's port: AIRFLOW_PORT, else 8080.

    environ: the variables to read (default: the process environment).
    """
    environ = os.environ if environ is None else environ
    text = environ.get("AIRFLOW_PORT", "").strip() or str(DEFAULT_AIRFLOW_PORT)
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(
            f"AIRFLOW_PORT={text!r} is not a TCP port; use a number from 1 to 65535, "
            "for example `make airflow AIRFLOW_PORT=8081`."
        )
    return int(text)


def airflow_home(project: Path) -> Path:
    return project / ".airflow"


def airflow_environment(
    project: Path, port: int, s3_endpoint_url: str, environ: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment Airflow runs in: this project's DAGs, home and S3, the port's URLs.

    project: the project folder (with dags/ and dvc.yaml).
    port: the API server's port; the execution API, which tasks report to, is served there.
    s3_endpoint_url: the S3 server every task uses, so that no task starts its own.
    environ: the environment to extend (default: the process environment).
    """
    from pmatch.s3server import LOCAL_CREDENTIALS

    environ = dict(os.environ if environ is None else environ)
    for variable, value in SMALL_MACHINE_DEFAULTS.items():
        environ.setdefault(variable, value)
    if not environ.get("PMATCH_S3_ENDPOINT_URL"):
        # The embedded server accepts only its own fixed key.
        environ.update(LOCAL_CREDENTIALS)
    # standalone starts its components as `airflow ...` from PATH.
    scripts = str(Path(sys.executable).parent)
    environ["PATH"] = os.pathsep.join(part for part in (scripts, environ.get("PATH")) if part)
    environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home(project)),
            "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(project / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API__PORT": str(port),
            # Tasks reach the execution API at localhost:8080 unless told otherwise, so on
            # another port every task would fail.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "PMATCH_PROJECT_DIR": str(project),
            "PMATCH_S3_ENDPOINT_URL": s3_endpoint_url,
        }
    )
    return environ


def start(project: Path, say=print) -> None:
    """Starts the embedded S3 server (unless PMATCH_S3_ENDPOINT_URL names one) and
    `airflow standalone`, each in its own process group, and waits until the API answers.

    project: the project folder. Does nothing when this project's Airflow already runs.
    """
    from pmatch.config import load_settings

    home = airflow_home(project)
    home.mkdir(parents=True, exist_ok=True)
    port = airflow_port()
    url = f"http://localhost:{port}"
    if _running(home / "airflow.pid", "standalone"):
        say(f"Airflow already runs for {project}: {url} (stop it with `make airflow-stop`)")
        _say_login(home, url, say)
        return
    if not _port_is_free(port):
        raise LocalAirflowError(
            f"Port {port} is already in use, so Airflow's API server cannot listen there. "
            "Stop what uses it, or pick another port: `make airflow AIRFLOW_PORT=8081`."
        )
    settings = load_settings(
        {**os.environ, "PMATCH_PROJECT_DIR": os.environ.get("PMATCH_PROJECT_DIR") or str(project)}
    )
    endpoint_url = settings.s3_endpoint_url
    try:
        if endpoint_url:
            say(f"S3: {endpoint_url} (PMATCH_S3_ENDPOINT_URL); no local S3 server started")
        else:
            endpoint_url = _start_s3(project, home, settings, say)
        environment = airflow_environment(project, port, endpoint_url)
        _start_airflow(home, environment, url, say)
    except BaseException:
        stop(project, say=lambda message: None)
        raise
    say(f"Airflow is up: {url}")
    _say_login(home, url, say)
    say(f"Logs: {home / 'standalone.log'}; stop everything with `make airflow-stop`.")


def stop(project: Path, say=print) -> None:
    """Stops Airflow (standalone and every process it started, or the components
    start_components() started in the project's Airflow home) and the S3 server that start()
    left running for project, and waits until their ports are free. Running it
    when nothing runs does nothing."""
    home = airflow_home(project)
    stopped_any = False
    processes = (
        ("airflow", "standalone"),
        *((component, f"airflow {component}") for component in COMPONENTS),
        ("s3", "serve-s3"),
    )
    for name, marker in processes:
        pid_file = home / f"{name}.pid"
        count, ports = _stop_tree(pid_file, marker)
        pid_file.unlink(missing_ok=True)
        if count:
            stopped_any = True
            listening = f"; freed port {', '.join(map(str, sorted(ports)))}" if ports else ""
            say(f"stopped {name}: {count} processes{listening}")
    if not stopped_any:
        say(f"nothing to stop: no Airflow or S3 server of `make airflow` runs for {project}")


def serve_s3(project: Path) -> None:
    """Runs the embedded S3 server over PMATCH_LOCAL_S3_DIR on PMATCH_LOCAL_S3_PORT until
    SIGTERM; creates the registry's bucket (PMATCH_S3_BUCKET) first."""
    from pmatch.config import load_settings
    from pmatch.s3server import LOCAL_CREDENTIALS, LocalS3Server, ensure_bucket, s3_client

    settings = load_settings(
        {**os.environ, "PMATCH_PROJECT_DIR": os.environ.get("PMATCH_PROJECT_DIR") or str(project)}
    )
    directory = settings.local_s3_dir
    if not directory.is_absolute():
        directory = project / directory
    os.environ.update(LOCAL_CREDENTIALS)
    # SIGTERM ends the loop below through SystemExit, so the server is stopped cleanly.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
    with LocalS3Server(
        directory, port=settings.local_s3_port, startup_timeout=S3_STARTUP_TIMEOUT_SECONDS
    ) as server:
        # Tasks get the endpoint from PMATCH_S3_ENDPOINT_URL, and pmatch creates buckets
        # only on servers it starts itself, so the bucket is made here.
        ensure_bucket(s3_client(server.endpoint_url, settings.aws_region), settings.s3_bucket)
        print(f"{S3_READY_MESSAGE} {server.endpoint_url}", flush=True)
        while True:
            time.sleep(3600)


def _spawn_detached(
    command: list[str], cwd: Path, log_path: Path, pid_path: Path, environment=None
) -> subprocess.Popen:
    """Starts command in its own session (so `make airflow` returns, and stop() finds every
    process it spawns through its process group), output appended to log_path, its pid in
    pid_path."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # With its start time: some components retitle themselves (`airflow api_server -- ...`), so
    # the command line cannot tell the process from another that got the pid later.
    pid_path.write_text(f"{process.pid} {_start_time(process.pid)}\n")
    return process


def _start_s3(project: Path, home: Path, settings, say) -> str:
    """Starts `serve-s3` in its own session; returns its endpoint once it answers."""
    log_path = home / "s3.log"
    say(f"starting the S3 server on port {settings.local_s3_port} (log: {log_path})")
    # A fresh log: the ready line of an earlier start must not be taken for this one's.
    log_path.write_bytes(b"")
    process = _spawn_detached(
        [sys.executable, "-m", "pmatch.airflow_local", "serve-s3", "--project", str(project)],
        project,
        log_path,
        home / "s3.pid",
    )
    deadline = time.monotonic() + S3_STARTUP_TIMEOUT_SECONDS + 30
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith(S3_READY_MESSAGE):
                return line.removeprefix(S3_READY_MESSAGE).strip()
        if process.poll() is not None:
            last = [line for line in text.splitlines() if line.strip()][-1:] or ["no output"]
            raise LocalAirflowError(f"The S3 server did not start: {last[0]} (log: {log_path})")
        time.sleep(0.2)
    raise LocalAirflowError(f"The S3 server did not answer in time; see {log_path}.")


def _start_airflow(home: Path, environment: dict[str, str], url: str, say) -> None:
    """Starts `airflow standalone` in its own session and waits until its API answers."""
    log_path = home / "standalone.log"
    say(f"starting Airflow standalone on {url} (log: {log_path}); the first start takes minutes")
    process = _spawn_detached(
        [str(Path(sys.executable).parent / "airflow"), "standalone"],
        Path(environment["PMATCH_PROJECT_DIR"]),
        log_path,
        home / "airflow.pid",
        environment,
    )
    _wait_for_api(url, {"standalone": process}, home)


# The processes of a deployment without `standalone`, each started on its own; the order is
# the order they start in. The API server comes last: start_components waits for it.
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")


def start_components(
    environment: dict[str, str], components: tuple[str, ...] = COMPONENTS, say=print
) -> str:
    """Migrates the metadata DB (`airflow db migrate`), then starts each Airflow component
    (`airflow scheduler`, `airflow dag-processor`, ...) in its own session, and waits until
    the API answers and says the scheduler and DAG processor are healthy. Returns the API's
    URL. stop_components() stops them.

    environment: the components' environment (airflow_environment(), plus any overrides);
    its AIRFLOW_HOME holds the logs (`<component>.log`) and pid files, its
    AIRFLOW__API__PORT the API's port. components: which ones to start.
    """
    home = Path(environment["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    url = f"http://localhost:{environment['AIRFLOW__API__PORT']}"
    airflow = str(Path(sys.executable).parent / "airflow")
    project = Path(environment.get("PMATCH_PROJECT_DIR") or home)
    say(f"migrating the metadata DB in {home}")
    migrated = subprocess.run(
        [airflow, "db", "migrate"], env=environment, cwd=project, capture_output=True, text=True
    )
    if migrated.returncode != 0:
        last = [line for line in migrated.stderr.splitlines() if line.strip()][-1:] or ["-"]
        raise LocalAirflowError(f"`airflow db migrate` failed in {home}: {last[0]}")
    processes = {}
    for component in components:
        say(f"starting airflow {component} (log: {home / (component + '.log')})")
        processes[component] = _spawn_detached(
            [airflow, component],
            project,
            home / f"{component}.log",
            home / f"{component}.pid",
            environment,
        )
    _wait_for_api(url, processes, home, require=("scheduler", "dag_processor"))
    return url


def stop_components(home: Path, components: tuple[str, ...] = COMPONENTS) -> int:
    """Stops the components start_components() started in home (each one's process group
    and descendants, SIGKILL after STOP_TIMEOUT_SECONDS) and waits until their ports are
    free; returns how many processes were stopped."""
    stopped = 0
    for component in components:
        pid_file = home / f"{component}.pid"
        count, _ = _stop_tree(pid_file, f"airflow {component}")
        pid_file.unlink(missing_ok=True)
        stopped += count
    return stopped


def _wait_for_api(
    url: str, processes: dict[str, subprocess.Popen], home: Path, require: tuple[str, ...] = ()
) -> None:
    """Waits until url's health endpoint answers 200 and names each component of require
    healthy; fails when one of processes exits first, naming its log."""
    import json

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + AIRFLOW_STARTUP_TIMEOUT_SECONDS
    health = {}
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise LocalAirflowError(
                    f"airflow {name} exited with code {process.returncode}; "
                    f"see {home / (name + '.log')}."
                )
        try:
            with opener.open(f"{url}/api/v2/monitor/health", timeout=2) as response:
                health = json.loads(response.read() or b"{}")
                if response.status == 200 and all(
                    (health.get(part) or {}).get("status") == "healthy" for part in require
                ):
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1)
    raise LocalAirflowError(
        f"Airflow's API on {url} did not report {', '.join(require) or 'itself'} healthy within "
        f"{AIRFLOW_STARTUP_TIMEOUT_SECONDS:g} s (last health: {health or 'no answer'}); "
        f"see the logs in {home}."
    )


def _say_login(home: Path, url: str, say) -> None:
    say(f"  user: {AIRFLOW_USER}")
    say(f"  password: in {home / PASSWORD_FILE} (JSON: user -> password)")
    say(f"  REST API: POST {url}/auth/token with that user and password gives a JWT")


def _running(pid_file: Path, marker: str) -> bool:
    return bool(_leader(pid_file, marker))


def _leader(pid_file: Path, marker: str):
    """The process pid_file names, when it still runs: the same process, started at the
    time the file records (a pid may belong to another program by now), or, for a file
    without a start time, one whose command line contains marker."""
    import psutil

    try:
        fields = pid_file.read_text().split()
        process = psutil.Process(int(fields[0]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if len(fields) > 1:
            return process if fields[1] == _start_time(process.pid) else None
        if marker in " ".join(process.cmdline()):
            return process
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def _start_time(pid: int) -> str:
    """When process pid started, as text that is the same each time it is read."""
    import psutil

    return f"{psutil.Process(pid).create_time():.2f}"


def _stop_tree(pid_file: Path, marker: str) -> tuple[int, set[int]]:
    """Terminates the process pid_file names, its process group and all its descendants,
    then kills what is left after STOP_TIMEOUT_SECONDS; returns how many processes were
    stopped and the TCP ports they listened on."""
    import psutil

    leader = _leader(pid_file, marker)
    if leader is None:
        return 0, set()
    stopped: dict[int, psutil.Process] = {}
    ports: set[int] = set()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    # Collected again each round: a dying scheduler may still fork a worker, and Airflow's
    # task supervisors put each task in a process group of its own.
    while True:
        members = _members(leader)
        alive = [process for process in members if _alive(process)]
        if not alive:
            break
        # Ports first, for all of them: a terminated parent may close its children's sockets.
        for process in alive:
            if process.pid not in stopped:
                ports |= _listening_ports(process)
                stopped[process.pid] = process
        for process in alive:
            try:
                if time.monotonic() < deadline:
                    process.terminate()
                else:
                    process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=1)
    _wait_until_free(ports)
    return len(stopped), ports


def _members(leader) -> list:
    """The leader, its descendants and every process in its process group."""
    import psutil

    members = {leader.pid: leader}
    try:
        for child in leader.children(recursive=True):
            members[child.pid] = child
    except psutil.Error:
        pass
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == leader.pid:
                members[process.pid] = process
        except (OSError, psutil.Error):
            continue
    return [process for pid, process in members.items() if pid != os.getpid()]


def _alive(process) -> bool:
    """Whether process still runs; a zombie has exited and only waits for its parent."""
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _listening_ports(process) -> set[int]:
    import psutil

    try:
        connections = process.net_connections(kind="inet")
    except psutil.Error:
        return set()
    return {each.laddr.port for each in connections if each.status == psutil.CONN_LISTEN}


def _wait_until_free(ports: set[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(not _port_is_free(port) for port in ports):
        if time.monotonic() > deadline:
            busy = ", ".join(str(port) for port in sorted(ports) if not _port_is_free(port))
            raise LocalAirflowError(f"Port {busy} is still in use after stopping; see `ss -ltnp`.")
        time.sleep(0.2)


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pmatch.airflow_local",
        description="Run this project's Airflow (standalone) and embedded S3 server in the background.",
    )
    parser.add_argument(
        "command",
        choices=("start", "stop", "serve-s3"),
        help="start: `make airflow`; stop: `make airflow-stop`; serve-s3: the S3 server "
        "process that start runs",
    )
    parser.add_argument("--project", default=".", help="project folder (default: .)")
    args = parser.parse_args(argv)
    project = Path(args.project).resolve()
    try:
        if args.command == "start":
            start(project)
        elif args.command == "stop":
            stop(project)
        else:
            serve_s3(project)
    except (LocalAirflowError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
