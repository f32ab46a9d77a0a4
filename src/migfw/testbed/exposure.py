"""The trial's attack-window traffic: the attacker's SYN probes and the two stateful flows.

`TrialTraffic(bed, folder, enforcement, flows_cfg)` is started by the trial runner after the
ICMP prober and stopped before it. It writes (CONTRACT):

* `attack.pcap`, `attack_sendlog.csv` - the attacker namespace's SYN probes to the VM's
  blocked and allowed port (migfw.testbed.attacker) and every answer;
* `flows.csv` - the `stateful` flow (FTP control connection, NOOP every 1/rate s) and the
  `established` flow (echo on tcp/7, admitted only as established: opened while a temporary
  guest rule `tcp dport 7 accept` exists, which is deleted by handle before the lead-in
  ends) (migfw.testbed.flows).

When the guest has no `table inet migfw` (placements without a guest firewall) no temporary
rule is needed or added; trial.json records `temporary_rule: null`. A host-side firewall
that blocks tcp/7 then refuses the connection, recorded as `error:connect ...` in flows.csv.

Both run where the prober runs: in the local testbed's attacker and prober namespaces; with
the external provider on this machine, or - `prober_host` set - on the prober host over SSH
(migfw.testbed.remote: RemoteAttackSession, RemoteFlowSession), whose files come back
checked by SHA-256 (`copied_sha256`). There the attacker's address is the prober's.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

from migfw.config import default
from migfw.errors import MigfwError
from migfw.testbed.base import Testbed

STATEFUL = ("stateful", 21, "ftp")  # passed by the ruleset (S1/F1: tcp/21 from the prober)
ESTABLISHED = ("established", 7, "echo")  # passed by no rule: only as ct state established
# issue 22: the guest holds each request for its tick, so it speaks first after the resume
GUEST_FIRST = ("guest_first", 8, "hold")
STATE_ONLY = (ESTABLISHED, GUEST_FIRST)
TEMP_COMMENT = "migfw-temporary-established"
NO_TABLE = "migfw: no table inet migfw"


def _guest_shell(bed: Testbed):  # -> GuestShell
    from migfw.testbed.deploy import GuestShell

    return GuestShell(
        bed.vm_address, bed.ssh_user, bed.ssh_key, bed.ssh_known_hosts, netns=bed.ssh_netns
    )


def add_temporary_rule(shell: Any, source: str, port: int | tuple[int, ...]) -> int | None:
    """Insert `ip saddr SOURCE tcp dport PORT(S) accept` at the top of the guest's input
    chain; its handle, or None when the guest has no migfw table (nothing to get past)."""
    ports = (port,) if isinstance(port, int) else tuple(port)
    dport = str(int(ports[0])) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }"
    # One exec: the table's presence decides (no table, nothing to get past).
    out = shell.run(
        "if nft list table inet migfw >/dev/null 2>&1; then "
        f"nft --echo --handle insert rule inet migfw input ip saddr {source} "
        f'tcp dport {dport} accept comment "{TEMP_COMMENT}"; else echo {NO_TABLE}; fi'
    )
    if out.strip() == NO_TABLE:
        return None
    m = re.search(r"# handle (\d+)", out)
    if not m:
        raise MigfwError(f"guest nft: no handle for the temporary rule in {out.strip()!r}")
    return int(m[1])


def delete_temporary_rule(shell: Any, handle: int) -> None:
    listing = shell.run(f"nft delete rule inet migfw input handle {int(handle)} && "
                        "nft list chain inet migfw input")  # fmt: skip
    if TEMP_COMMENT in listing:
        raise MigfwError("guest nft: the temporary rule is still there after deleting it")


class TrialTraffic:
    """Attacker probes + flows for one trial; start() / stop() (stop always cleans up)."""

    def __init__(
        self,
        bed: Testbed,
        folder: Path,
        enforcement: dict[str, Any] | None,
        flows_cfg: dict[str, Any] | None,
        layers: list[Any] | None = None,
        sides: dict[str, dict[str, Any]] | None = None,
        egress: dict[str, Any] | None = None,
        shell: Any = None,
    ) -> None:
        # An open guest shell for the temporary allow (None: a login of its own).
        self.shell = shell
        # The egress attacker (migfw.testbed.egress): {sink, rate_hz, allowed_rate_hz}.
        self.egress_cfg = egress
        self.egress: Any = None
        # Attackers beside the switch's (issue 22): {side: {netns, iface, address, host,
        # rate_hz, allowed_rate_hz}} - the co-tenants of migfw.testbed.cotenant.
        self.sides = dict(sides or {})
        self.side_sessions: dict[str, Any] = {}
        # Firewall layers outside the guest that also need the established flow's temporary
        # allow (e.g. OVN's ACLs, migfw.testbed.ovn_placement.TemporaryAcl): add(source,
        # port) -> the rule as text, remove() -> None or what stays in its place (a dict,
        # trial.json temporary_rules[].kept); `where` names the layer.
        self.layers = list(layers or [])
        self.bed, self.folder = bed, Path(folder)
        self.enforcement = enforcement or {}
        self.flows_cfg = flows_cfg or {}
        self.attack = None
        self.flows = None
        self.record: dict[str, Any] = {}

    @property
    def attacker_address(self) -> str | None:
        # No attacker namespace (external provider): the SYNs leave from the prober's address.
        return self.bed.extra.get("attacker_address") or self.bed.prober_address

    def start(self, log: Any, ready: Any = None) -> None:
        """Start the attackers (a thread) and the flows at once: the attackers' captures and
        logins overlap the temporary allows and the flows' connects, which never involve the
        attackers' ports or addresses. `ready()` (the probe capture running) is awaited
        before the flows connect: their handshakes belong in probe.pcap."""
        import threading

        if self.bed.extra.get("prober"):  # sessions on a prober host share its SSH login
            try:
                self._start_flows(log, ready)
                self._start_attack(log)
            except BaseException:
                self.kill()
                raise
            return
        failed: list[BaseException] = []

        def attack() -> None:
            try:
                self._start_attack(log)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                failed.append(exc)

        starter = threading.Thread(target=attack, name="migfw-attack-start", daemon=True)
        starter.start()
        try:
            try:
                self._start_flows(log, ready)
            finally:
                starter.join()
            if failed:
                raise failed[0]
        except BaseException:
            self.kill()
            raise

    def prepare_stop(self) -> None:
        """At the settle's end: the logins the stops need, made ahead (egress)."""
        if self.egress is not None and self.egress.guest_pid is not None:
            self.egress.login_ahead()

    def confirm(self) -> None:
        """Before the migration: wait for the checks a layer runs after removing its
        temporary allow (ovn: no new connection is admitted); raises if one failed."""
        for layer in self.layers:
            if hasattr(layer, "confirm"):
                layer.confirm()

    def _connect_flows(
        self, log: Any, source: str, ports: tuple[int, ...], rules: list[dict[str, Any]],
        ready: Any,
    ) -> tuple[int | None, dict[str, Any]]:  # fmt: skip
        """The temporary allows at every layer (the guest's over SSH, each host layer in a
        thread of its own, all at once), the flows' connects, then every allow removed again
        (also at once). `rules` receives trial.json's temporary_rules, the guest's first."""
        from concurrent.futures import ThreadPoolExecutor, wait

        def add(layer: Any) -> dict[str, Any]:
            text = layer.add(source, ports)
            log("temporary_rule_added", where=layer.where)
            return {"where": layer.where, "rule": text, "added_at": time.time(),
                    "removed_at": None}  # fmt: skip

        def remove(layer: Any, rule: dict[str, Any]) -> None:
            kept = layer.remove()  # what stays instead (ovn: established-only ACLs)
            # A layer that checks after removing says when it removed (kept.at).
            rule["removed_at"] = (kept or {}).get("at") or time.time()
            if kept:
                rule["kept"] = kept
            log("temporary_rule_deleted", where=layer.where)

        handle = None
        with ThreadPoolExecutor(max_workers=max(1, len(self.layers))) as pool:
            adding = [pool.submit(add, layer) for layer in self.layers]
            try:
                login = _guest_shell(self.bed) if self.shell is None else None
                with login or contextlib.nullcontext(self.shell) as shell:
                    # Every active layer admits the state-only flows while they connect
                    # (issue 22): the guest's ruleset (when it has one) and each host layer.
                    handle = add_temporary_rule(shell, source, ports)
                    if handle is not None:
                        rules.append({"where": "guest", "rule": f"ip saddr {source} tcp dport "
                                      f"{{{', '.join(map(str, ports))}}} accept",
                                      "handle": handle, "added_at": time.time(),
                                      "removed_at": None})  # fmt: skip
                        log("temporary_rule_added", where="guest", handle=handle)
                    try:
                        wait(adding)
                        for future in adding:
                            future.result()  # a layer that failed: the flows never connect
                        if ready is not None:
                            ready()
                        connected = self.flows.start()
                    finally:
                        removing = [pool.submit(remove, layer, future.result())
                                    for layer, future in zip(self.layers, adding, strict=True)
                                    if future.done() and future.exception() is None]  # fmt: skip
                        if handle is not None:
                            delete_temporary_rule(shell, handle)
                            rules[0]["removed_at"] = time.time()
                            log("temporary_rule_deleted", where="guest", handle=handle)
                        wait(removing)
                        for future in removing:
                            future.result()
            finally:
                wait(adding)
                rules += [f.result() for f in adding if f.exception() is None]
        return handle, connected

    def _start_flows(self, log: Any, ready: Any = None) -> None:
        from migfw.testbed.flows import FlowSession
        from migfw.trials.attack_contract import KNOWN_FLOWS

        rate = float(self.flows_cfg.get("rate_hz", default("trials.flows.rate_hz")) or 0)
        if rate <= 0:
            return
        flows = (STATEFUL, *STATE_ONLY)
        specs = [f"{n}:{p}:{k}" for n, p, k in flows]
        state_ports = tuple(p for _, p, _ in STATE_ONLY)
        timeout = float(self.flows_cfg.get("timeout_s") or default("trials.flows.timeout_s"))
        remote = self.bed.extra.get("prober")
        if remote:  # the flows start where the prober runs: on the prober host
            from migfw.testbed.remote import RemoteFlowSession

            self.flows = RemoteFlowSession(
                remote, self.bed.vm_address, specs, rate, self.folder / "flows.csv", timeout
            )
        else:
            self.flows = FlowSession(self.bed.prober_netns, self.bed.vm_address, specs, rate,
                                     self.folder / "flows.csv", timeout_s=timeout)  # fmt: skip
            self.flows.spawn()  # its start-up overlaps the temporary allows
        source = self.bed.prober_address or ""
        rules: list[dict[str, Any]] = []
        handle, connected = self._connect_flows(log, source, state_ports, rules, ready)
        log("flows_started", **connected)
        removed = [r["removed_at"] for r in rules if r["removed_at"] is not None]
        self.record["flows"] = {
            "rate_hz": rate,
            "stateful": {"port": STATEFUL[1], "service": "ftp NOOP"},
            "established": {"port": ESTABLISHED[1], "service": "echo"},
            "guest_first": {"port": GUEST_FIRST[1], "service": "held echo (migfw-hold)"},
            # issue 22's description of each flow (local_port added from the flows' DONE)
            "flows": {n: {"port": p, "local_port": None, "state_only": KNOWN_FLOWS[n]["state_only"],
                          **({"initiative": KNOWN_FLOWS[n]["initiative"]}
                             if KNOWN_FLOWS[n]["initiative"] else {})}
                      for n, p, _ in flows},  # fmt: skip
            "connected": connected.get("connected"),
            "connect_errors": {k: v for k, v in (connected.get("errors") or {}).items() if v},
            "temporary_rule": None if handle is None else {
                "where": "guest", "rule": rules[0]["rule"], "handle": handle,
                "removed_at": rules[0]["removed_at"]},
            "temporary_rules": rules,
            "allow_removed": max(removed) if removed else None,
            # The flows leave the prober on the probe capture's interface: probe.pcap holds
            # every TCP segment of the VM there, both directions.
            "capture": "probe.pcap",
        }  # fmt: skip

    def _start_attack(self, log: Any) -> None:
        from migfw.testbed.attacker import AttackSession

        given = self.enforcement  # a key left out: the config schema's default
        rate = float(given.get("rate_hz", default("trials.enforcement.rate_hz")) or 0)
        netns = self.bed.extra.get("attacker_netns")
        if rate <= 0:
            return
        blocked = int(given.get("blocked_port") or default("trials.enforcement.blocked_port"))
        allowed = int(given.get("allowed_port") or default("trials.enforcement.allowed_port"))
        allowed_rate = float(self.enforcement.get("allowed_rate_hz") or min(rate, 100.0))
        args = (self.bed.vm_address, str(self.attacker_address), blocked, allowed, rate,
                self.folder / "attack.pcap", self.folder / "attack_sendlog.csv")  # fmt: skip
        remote = self.bed.extra.get("prober")
        if remote:  # on the prober host, from the prober's address and interface
            from migfw.testbed.remote import RemoteAttackSession

            self.attack = RemoteAttackSession(remote, str(self.bed.prober_iface), *args,
                                              allowed_rate_hz=allowed_rate)  # fmt: skip
        else:  # the attacker namespace (local), or this machine (external, local prober)
            iface = str(self.bed.extra.get("attacker_iface") or self.bed.prober_iface)
            self.attack = AttackSession(netns, iface, *args, allowed_rate_hz=allowed_rate)
        self._start_sides(blocked, allowed, log)  # co-tenants: they start beside the switch's
        starter = self._start_egress()  # the guest's own sender, beside them too
        self.attack.start()
        log("attack_started", pids=self.attack.pids, rate_hz=rate)
        for side, session in self.side_sessions.items():  # started meanwhile (threads)
            session.start_wait()
            log("attack_started", side=side, pids=session.pids,
                rate_hz=self.record["attackers"][side]["rate_hz"])  # fmt: skip
        if starter is not None:
            starter.join()
            if self.egress_error is not None:
                raise self.egress_error
            log("attack_started", side="egress", pids=self.egress.pids,
                rate_hz=self.egress.rate_hz)  # fmt: skip
        # `address` is the attacked address (the VM), as the attack-window analysis reads it.
        self.record["attack"] = {"address": self.bed.vm_address, "attacker": self.attacker_address,
                                 "blocked_port": blocked, "allowed_port": allowed,
                                 "rate_hz": rate, "allowed_rate_hz": allowed_rate}  # fmt: skip
        switch = {"address": self.bed.vm_address, "peer": self.attacker_address, "host": None,
                  "blocked_port": blocked, "allowed_port": allowed, "rate_hz": rate,
                  "allowed_rate_hz": allowed_rate, "clock": "host"}  # fmt: skip
        self.record["attackers"] = {"switch": switch, **self.record.get("attackers", {})}

    def _start_egress(self) -> Any:
        """The egress session's start in a thread (its SSH login and the sink's tcpdump)."""
        import threading

        from migfw.testbed.egress import ALLOWED, BLOCKED, EgressSession

        self.egress_error: BaseException | None = None
        if not self.egress_cfg:
            return None
        cfg = self.egress_cfg
        self.egress = EgressSession(self.bed, cfg["sink"], self.folder, cfg["rate_hz"],
                                    cfg["allowed_rate_hz"])  # fmt: skip
        self.record.setdefault("attackers", {})["egress"] = {
            "address": self.bed.vm_address, "peer": cfg["sink"]["address"], "host": None,
            "blocked_port": BLOCKED, "allowed_port": ALLOWED, "rate_hz": cfg["rate_hz"],
            "allowed_rate_hz": cfg["allowed_rate_hz"], "clock": "guest"}  # fmt: skip

        def run() -> None:
            try:
                self.egress.start()
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                self.egress_error = exc

        starter = threading.Thread(target=run, name="migfw-egress-start", daemon=True)
        starter.start()
        return starter

    def _start_sides(self, blocked: int, allowed: int, log: Any) -> None:
        """The co-tenant attackers: each its own namespace, capture, send log, port base."""
        from migfw.testbed.attacker import AttackSession
        from migfw.trials.attack_contract import SIDE_SPORT_BASE, side_files

        for side, where in self.sides.items():
            rate = float(where.get("rate_hz") or 0)
            if rate <= 0:
                continue
            allowed_rate = float(where.get("allowed_rate_hz") or min(rate, 100.0))
            pcap, sendlog = side_files(side)
            session = AttackSession(where["netns"], where["iface"], self.bed.vm_address,
                                    where["address"], blocked, allowed, rate,
                                    self.folder / pcap, self.folder / sendlog,
                                    allowed_rate_hz=allowed_rate,
                                    sport_base=SIDE_SPORT_BASE[side])  # fmt: skip
            session.start_async()
            self.side_sessions[side] = session
            self.record.setdefault("attackers", {})[side] = {
                "address": self.bed.vm_address, "peer": where["address"],
                "host": where.get("host"), "blocked_port": blocked, "allowed_port": allowed,
                "rate_hz": rate, "allowed_rate_hz": allowed_rate, "clock": "host"}  # fmt: skip

    @property
    def pids(self) -> dict[str, int]:
        out = {}
        if self.attack is not None:
            out.update({f"attack_{k}": v for k, v in self.attack.pids.items()})
        for side, session in self.side_sessions.items():
            out.update({f"attack_{side}_{k}": v for k, v in session.pids.items()})
        if self.flows is not None and getattr(self.flows, "proc", None) is not None:
            out["flows"] = self.flows.proc.pid
        return out

    @property
    def remote_pids(self) -> dict[str, int]:
        """PIDs on the prober host (killed over SSH, never here)."""
        out = {}
        for name, session in (("attack", self.attack), ("flows", self.flows)):
            for k, v in (getattr(session, "remote_pids", None) or {}).items():
                out[f"{name}_{k}"] = v
        return out

    def stop(self, log: Any, also: Any = None) -> dict[str, Any]:
        """Stop every attacker and the flows at once (each waits for its last answers; in
        parallel the waits overlap); the trial.json parts (attack, attackers, flows).
        `also`: one more stop to run beside them (the ICMP prober's); its result or
        exception is in `self.also_result`."""
        from concurrent.futures import ThreadPoolExecutor

        errors: list[str] = []
        jobs: dict[str, Any] = {}
        if self.attack is not None:
            jobs["switch"] = self.attack.stop
        jobs.update({side: s.stop for side, s in self.side_sessions.items()})
        if self.egress is not None and self.egress.guest_pid is not None:
            jobs["egress"] = self.egress.stop
        if self.flows is not None and self.flows.connected is not None:
            jobs["flows"] = self.flows.stop
        if also is not None:
            jobs["also"] = also
        results: dict[str, Any] = {}
        try:
            # Sessions on a prober host share its SSH login: one at a time there.
            workers = 1 if self.bed.extra.get("prober") else max(1, len(jobs))
            took: dict[str, float] = {}

            def timed(name: str, job: Any) -> Any:
                t0 = time.monotonic()
                try:
                    return job()
                finally:
                    took[name] = round(time.monotonic() - t0, 3)

            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {name: pool.submit(timed, name, job) for name, job in jobs.items()}
                for name, future in futures.items():
                    try:
                        results[name] = future.result()
                    except MigfwError as exc:
                        results[name] = exc
            log("stop_times", **took)  # which stop the trial waited for (overhead, issue 22)
        finally:
            self.kill()
        self.also_result = results.pop("also", None)
        for name, res in results.items():
            if isinstance(res, MigfwError):
                errors.append(str(res) if name in ("switch", "flows") else f"{name}: {res}")
            elif name == "switch":
                summary = {k: res.get(k) for k in (
                    "syns_sent", "sent_per_port", "achieved_rate_hz", "lateness_p50_us",
                    "lateness_p99_us", "lateness_max_us", "send_errors", "scheduling",
                    "capture_packets", "capture_dropped", "blocked_captured",
                    "allowed_captured", "blocked_answers", "allowed_answers")}  # fmt: skip
                self.record["attack"]["sender"] = summary
                self.record["breaches"] = res.get("breaches") or []
                log("attack_stopped", **summary)
            elif name == "egress":
                self.record["attackers"]["egress"]["sender"] = res
                log("attack_stopped", side="egress", **res)
            elif name == "flows":
                self.record["flows"].update(res["flows"])
                for flow, described in self.record["flows"].get("flows", {}).items():
                    described["local_port"] = (res["flows"].get(flow) or {}).get("local_port")
                log("flows_stopped", **res["flows"])
            else:
                summary = {k: res.get(k) for k in (
                    "syns_sent", "achieved_rate_hz", "lateness_p99_us", "send_errors",
                    "capture_packets", "capture_dropped", "blocked_captured",
                    "blocked_answers", "allowed_answers")}  # fmt: skip
                self.record["attackers"][name]["sender"] = summary
                log("attack_stopped", side=name, **summary)
        copied = {**getattr(self.attack, "copied", {}), **getattr(self.flows, "copied", {})}
        if copied:  # files copied back from the prober host, SHA-256 checked
            self.record["copied_sha256"] = copied
        if errors:
            self.record["errors"] = errors
        return self.record

    def kill(self) -> None:
        if self.attack is not None:
            self.attack._kill()
        for session in self.side_sessions.values():
            session._kill()
        if self.egress is not None:
            self.egress.kill()
        if self.flows is not None:
            self.flows.kill()
