"""Runs a scenario over a running phone: each call's steps in order, a verdict per step.

The runner is a face like the CLI: it drives the phone only through its commands and
events (and the two test hooks of the Phone API, the received-audio tap and the INVITE's
headers). The placing side dials ``repeat`` calls at ``rate`` per second; the answering
side takes each incoming call as it comes. Every call runs its own copy of the steps,
concurrently; a failed expectation ends that call (unless the step says ``continue``) and
what was measured goes into the report.
"""

from __future__ import annotations

import asyncio
import time
import wave
from dataclasses import dataclass, field
from typing import Any, Callable

from ..ua.phone import CommandError, Phone, ev
from .audio import AudioMonitor, Analyser, Frame, judge_silence, judge_speech, judge_tone
from .spec import Scenario, Step, matches

__all__ = ["ScenarioRunner", "CallResult", "StepResult"]

ANSWER_WAIT = 10.0      # an answer or reject we sent is confirmed within this
HANGUP_WAIT = 10.0      # a BYE / CANCEL we sent is answered within this
DTMF_DIGIT_S = 0.2      # a digit as we send it (100 ms tone, then the gap), for wait = true
DTMF_PAUSE_S = 1.0
JUDGE_EVERY = 5         # frames between verdicts on what arrived (100 ms of audio)


@dataclass
class StepResult:
    index: int
    kind: str
    label: str
    result: str             # passed | failed | skipped
    value: str | None = None
    message: str | None = None
    elapsed: float = 0.0


@dataclass
class CallResult:
    number: int
    call_id: str | None
    remote: str
    started: float                     # wall clock (for the JUnit timestamp)
    steps: list[StepResult] = field(default_factory=list)
    duration: float = 0.0

    @property
    def failures(self) -> list[StepResult]:
        return [s for s in self.steps if s.result == "failed"]

    @property
    def passed(self) -> bool:
        return not self.failures and bool(self.steps)


class StepFailed(Exception):
    """An expectation not met: the message says what was measured instead."""


class CallEnded(Exception):
    """The call is over: the steps that need it cannot run."""


class _CallEvents:
    """One call's events as the steps need them: futures and the digits received."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.incoming: Any = None
        self.ringing = loop.create_future()
        self.answered = loop.create_future()
        self.ended = loop.create_future()
        self.digits: list[str] = []
        self.digit_arrived = asyncio.Event()
        self.transfers: list[Any] = []     # our REFER's progress (transfer events)
        self.transfer_changed = asyncio.Event()
        self.codec: str | None = None

    def feed(self, event: Any) -> None:
        name = event.name
        if name == "incoming":
            self.incoming = event
        elif name in ("ringing", "early_media") and not self.ringing.done():
            self.ringing.set_result(event)
        elif name == "answered":
            self.codec = event.codec
            if not self.answered.done():
                self.answered.set_result(event)
        elif name == "ended" and not self.ended.done():
            self.ended.set_result(event)
        elif name == "dtmf":
            self.digits.append(event.digit)
            self.digit_arrived.set()
        elif name == "transfer" and event.role == "transferor":
            self.transfers.append(event)
            self.transfer_changed.set()

    def end_text(self) -> str:
        end = self.ended.result()
        detail = f"{end.status} {end.phrase or ''}".strip() if end.status else end.phrase
        return f"{end.reason} ({detail})" if detail else end.reason


class ScenarioRunner:
    def __init__(self, phone: Phone, scenario: Scenario, *,
                 say: Callable[[str], None] = lambda line: None) -> None:
        self.phone = phone
        self.scenario = scenario
        self.say = say
        self.results: list[CallResult] = []
        self.started = time.monotonic()
        self._calls: dict[str, _CallEvents] = {}
        self._early: dict[str, list[Any]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._unsubscribe = phone.bus.subscribe(self._route)
        self._new_calls: asyncio.Queue = asyncio.Queue()

    # ------------------------------------------------------------------ events
    def _route(self, event: Any) -> None:
        call_id = getattr(event, "call_id", None)
        if call_id is None or event.name in ("step", "call_verdict"):
            return
        events = self._calls.get(call_id)
        if events is not None:
            events.feed(event)
        else:
            self._early.setdefault(call_id, []).append(event)
            if event.name == "incoming":
                self._new_calls.put_nowait(call_id)
            if len(self._early) > 1000:  # calls nobody claims (not ours): forget the oldest
                self._early.pop(next(iter(self._early)))

    def _claim(self, call_id: str) -> _CallEvents:
        events = _CallEvents()
        self._calls[call_id] = events
        for event in self._early.pop(call_id, ()):
            events.feed(event)
        return events

    def close(self) -> None:
        self._unsubscribe()

    # ------------------------------------------------------------------ the placing side
    async def place(self, uri: str, *, repeat: int = 1, rate: float | None = None,
                    timeout: float | None = None, stop: asyncio.Event | None = None) -> None:
        """Dial ``repeat`` calls to ``uri``, ``rate`` per second (default: one after the
        other), each running the scenario; returns when every call is done."""
        loop = asyncio.get_running_loop()
        if rate:
            await self.phone.agent.media_ready()
        start = loop.time()
        stop = stop or asyncio.Event()
        for n in range(1, repeat + 1):
            if rate:
                delay = start + (n - 1) / rate - loop.time()
                if delay > 0 and await _wait_event(stop, delay):
                    break
            elif n > 1:
                await self._drain(stop)  # one after the other
            if stop.is_set():
                break
            self._spawn(self._place_one(n, uri, timeout))
        await self._drain(stop)

    async def _place_one(self, n: int, uri: str, timeout: float | None) -> None:
        result = CallResult(n, None, uri, time.time())
        self.results.append(result)
        began = time.monotonic()
        try:
            reply = await self.phone.execute("dial", {"uri": uri, "timeout": timeout})
        except CommandError as exc:
            result.steps.append(StepResult(0, "dial", "dial", "failed",
                                           message=str(exc).removeprefix("dial: ")))
            self._step_event(result, result.steps[-1])
            self._verdict(result, began)
            return
        result.call_id = reply["call_id"]
        await self._run_call(result, self._claim(result.call_id), began)

    # ------------------------------------------------------------------ the answering side
    async def serve(self, *, max_calls: int | None = None, stop: asyncio.Event) -> None:
        """Run the scenario for each incoming call (``max_calls`` at most; those beyond
        are refused 486) until ``stop`` or the last one is done."""
        taken = 0
        while not stop.is_set():
            getter = asyncio.ensure_future(self._new_calls.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                break
            call_id = getter.result()
            if max_calls is not None and taken >= max_calls:
                try:
                    await self.phone.execute("reject", {"call_id": call_id, "status": 486})
                except CommandError:
                    pass
                self._early.pop(call_id, None)
                continue
            taken += 1
            events = self._claim(call_id)
            remote = events.incoming.from_ if events.incoming is not None else "?"
            result = CallResult(taken, call_id, remote, time.time())
            self.results.append(result)
            self._spawn(self._run_call(result, events, time.monotonic()))
            if max_calls is not None and taken >= max_calls:
                break
        await self._drain(stop)

    # ------------------------------------------------------------------ one call
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, stop: asyncio.Event) -> None:
        """Wait for the calls under way; on ``stop`` they are cut short (hung up)."""
        while self._tasks:
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([*self._tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                break

    async def _run_call(self, result: CallResult, events: _CallEvents, began: float) -> None:
        call = _CallSteps(self, result, events)
        try:
            await call.run()
        except asyncio.CancelledError:
            done = {s.index for s in result.steps}
            for step in self.scenario.steps:
                if step.index not in done:
                    result.steps.append(StepResult(step.index, step.kind, step.label,
                                                   "skipped", message="interrupted"))
                    self._step_event(result, result.steps[-1])
                    break
            await call.finish(interrupted=True)
        finally:
            self._verdict(result, began)

    def _step_event(self, result: CallResult, step: StepResult) -> None:
        self.phone.bus.publish(ev.Step(result.call_id or "", result.number, step.index,
                                       step.kind, step.label, step.result, step.value,
                                       step.message, round(step.elapsed, 3)))
        total = len(self.scenario.steps)
        text = f"call {result.number} step {step.index}/{total} {step.label}: {step.result}"
        detail = step.message if step.result != "passed" else step.value
        if detail:
            text += f": {detail}"
        self.say(f"{text} ({step.elapsed:.2f} s)")

    def _verdict(self, result: CallResult, began: float) -> None:
        result.duration = time.monotonic() - began
        failures = result.failures
        first = failures[0] if failures else None
        message = f"step {first.index} {first.label}: {first.message}" if first else None
        self.phone.bus.publish(ev.CallVerdict(
            result.call_id or "", result.number, "passed" if result.passed else "failed",
            sum(1 for s in result.steps if s.result != "skipped"), len(failures),
            round(result.duration, 3), message))
        verdict = "passed" if result.passed else f"failed ({message})"
        self.say(f"call {result.number} {verdict} in {result.duration:.2f} s")

    def summary(self) -> ev.Summary:
        passed = sum(1 for r in self.results if r.passed)
        summary = ev.Summary(self.scenario.name, len(self.results), passed,
                             len(self.results) - passed,
                             round(time.monotonic() - self.started, 3))
        self.phone.bus.publish(summary)
        self.say(f"scenario {self.scenario.name}: {summary.calls} "
                 f"call{'s' if summary.calls != 1 else ''}, {summary.passed} passed, "
                 f"{summary.failed} failed in {summary.duration:.2f} s")
        return summary


@dataclass
class _Recording:
    step: Step
    path: str
    task: asyncio.Task
    began: float


class _CallSteps:
    """The steps of one call, with what they share: its events, its audio, its files."""

    def __init__(self, runner: ScenarioRunner, result: CallResult, events: _CallEvents) -> None:
        self.runner = runner
        self.phone = runner.phone
        self.result = result
        self.events = events
        self.monitor: AudioMonitor | None = None
        self._untap: Callable[[], None] | None = None
        self._dtmf_seen = 0
        self._recordings: list[_Recording] = []  # going on in the background (wait = false)
        self.loop = asyncio.get_running_loop()

    @property
    def call_id(self) -> str:
        assert self.result.call_id is not None
        return self.result.call_id

    async def run(self) -> None:
        scenario = self.runner.scenario
        stopped, stopped_reason = False, ""
        for step in scenario.steps:
            if not stopped:
                stopped, stopped_reason = self._late_failures(stopped, stopped_reason)
            if stopped:
                outcome = StepResult(step.index, step.kind, step.label, "skipped",
                                     message=stopped_reason)
                self._report(outcome)
                continue
            began = self.loop.time()
            try:
                value = await getattr(self, f"step_{step.kind}")(step)
            except StepFailed as exc:
                outcome = StepResult(step.index, step.kind, step.label, "failed",
                                     message=str(exc))
            except CallEnded as exc:
                outcome = StepResult(step.index, step.kind, step.label, "failed",
                                     message=str(exc))
                stopped, stopped_reason = True, "the call had ended"
            except CommandError as exc:
                outcome = StepResult(step.index, step.kind, step.label, "failed",
                                     message=str(exc))
            else:
                outcome = StepResult(step.index, step.kind, step.label, "passed",
                                     value=value)
            outcome.elapsed = self.loop.time() - began
            self._report(outcome)
            if outcome.result == "failed" and step.on_failure == "hangup" and not stopped:
                stopped, stopped_reason = True, f"step {step.index} failed"
        await self.finish()

    def _report(self, outcome: StepResult) -> None:
        self.result.steps.append(outcome)
        self.runner._step_event(self.result, outcome)

    def _late_failures(self, stopped: bool, reason: str) -> tuple[bool, str]:
        """A recording that went on in the background (wait = false) and failed since:
        its step is reported again, failed, and its on_failure applies from here."""
        for recording in list(self._recordings):
            step, task = recording.step, recording.task
            if not task.done():
                continue
            self._recordings.remove(recording)
            if task.cancelled() or task.exception() is None:
                continue
            self._report(StepResult(step.index, step.kind, step.label, "failed",
                                    message=_record_failure(recording.path, task.exception()),
                                    elapsed=self.loop.time() - recording.began))
            if step.on_failure == "hangup" and not stopped:
                stopped, reason = True, f"step {step.index} failed"
        return stopped, reason

    async def finish(self, interrupted: bool = False) -> None:
        """Recordings closed (a failed one reported), the tap gone, the call hung up
        when still up."""
        tasks = [recording.task for recording in self._recordings]
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            self._late_failures(True, "")
        if self._untap is not None:
            self._untap()
            self._untap = None
        if self.result.call_id is not None and not self.events.ended.done():
            try:
                await self.phone.execute("hangup", {"call_id": self.call_id})
            except CommandError:
                pass
            await _bounded(self.events.ended, HANGUP_WAIT)

    # ------------------------------------------------------------------ helpers
    def _live(self) -> None:
        if self.events.ended.done():
            raise CallEnded(f"the call has ended: {self.events.end_text()}")

    async def _until(self, future: asyncio.Future, seconds: float) -> bool:
        """Wait for ``future`` (bounded); False on the time limit. CallEnded when the call
        ends first (unless ``future`` is the end itself)."""
        waits = [future] if future is self.events.ended else [future, self.events.ended]
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return True
        self._live()
        return False

    async def _sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass while the call lasts (CallEnded when it does not)."""
        await asyncio.wait([self.events.ended], timeout=seconds)
        self._live()

    def _connected(self) -> None:
        """From the answer on, every step may listen: the tap goes in once."""
        if self._untap is None:
            self.monitor = AudioMonitor(self.loop.time)
            self._untap = self.phone.tap_audio(self.call_id, self.monitor)

    # ------------------------------------------------------------------ before the answer
    async def step_expect_incoming(self, step: Step) -> str:
        incoming = self.events.incoming
        checks = [("from", getattr(incoming, "from_", None)), ("to", incoming.to),
                  ("display_name", incoming.display_name)]
        for key, actual in checks:
            pattern = step[key]
            if pattern is not None and not matches(pattern, actual):
                raise StepFailed(f"{key} is {actual!r}, expected {pattern!r}")
        if step["headers"]:
            lines = self.phone.request_headers(self.call_id)
            for name, pattern in step["headers"].items():
                values = [v for n, v in lines if n.lower() == name.lower()]
                if not values:
                    raise StepFailed(f"no {name} header")
                if not any(matches(pattern, v) for v in values):
                    raise StepFailed(f"{name} is {values[0]!r}, expected {pattern!r}")
        return f"from {incoming.from_}"

    async def step_ring(self, step: Step) -> str:
        await self._sleep(step["seconds"])
        return f"rang {step['seconds']:g} s"

    async def step_answer(self, step: Step) -> str:
        self._live()
        # every call of a scenario stands alone: answering one holds no other
        await self.phone.execute("answer", {"call_id": self.call_id, "hold_others": False})
        if not await self._until(self.events.answered, ANSWER_WAIT):
            raise StepFailed(f"the answer was not confirmed within {ANSWER_WAIT:g} s")
        self._connected()
        return f"answered, codec {self.events.codec}"

    async def step_reject(self, step: Step) -> str:
        self._live()
        await self.phone.execute("reject", {"call_id": self.call_id, "status": step["status"]})
        await _bounded(self.events.ended, ANSWER_WAIT)
        return f"rejected {step['status']}"

    async def step_expect_ringing(self, step: Step) -> str:
        within = step["within"]
        first = asyncio.ensure_future(asyncio.wait(
            [self.events.ringing, self.events.answered, self.events.ended], timeout=within,
            return_when=asyncio.FIRST_COMPLETED))
        await first
        if self.events.ringing.done():
            return "ringing"
        if self.events.answered.done():
            raise StepFailed("answered without ringing first")
        self._live()
        raise StepFailed(f"no 180/183 within {within:g} s")

    async def step_expect_answer(self, step: Step) -> str:
        within = step["within"]
        if not await self._until(self.events.answered, within):
            raise StepFailed(f"not answered within {within:g} s")
        self._connected()
        return f"answered, codec {self.events.codec}"

    async def step_expect_status(self, step: Step) -> str:
        within, wanted = step["within"], step["status"]
        await asyncio.wait([self.events.ended, self.events.answered], timeout=within,
                           return_when=asyncio.FIRST_COMPLETED)
        if self.events.answered.done() and not self.events.ended.done():
            raise StepFailed(f"the call was answered (expected {_statuses(wanted)})")
        if not self.events.ended.done():
            raise StepFailed(f"no final answer within {within:g} s")
        end = self.events.ended.result()
        if end.status not in wanted:
            got = f"{end.status} {end.phrase or ''}".strip() if end.status else end.reason
            raise StepFailed(f"got {got}, expected {_statuses(wanted)}")
        return f"{end.status} {end.phrase or ''}".strip()

    # ------------------------------------------------------------------ in the call
    async def step_expect_codec(self, step: Step) -> str:
        self._live()
        codec = self.events.codec
        if codec not in step["codec"]:
            raise StepFailed(f"codec is {codec}, expected {' or '.join(step['codec'])}")
        return str(codec)

    async def step_play(self, step: Step) -> str:
        self._live()
        args: dict[str, Any] = {"call_id": self.call_id, "duration": step["duration"]}
        if step["tone"] is not None:
            args.update(tone=step["tone"], level=step["level"])
            what = f"{step['tone']:g} Hz at {step['level']:g} dBFS"
        else:
            args.update(file=step["file"], loop=step["loop"])
            what = step["file"]
        reply = await self.phone.execute("play", args)
        seconds = reply.get("seconds")
        if step["wait"] and seconds:
            await self._sleep(seconds)
        return f"played {what}" + (f" for {seconds:.2f} s" if seconds else "")

    async def step_dtmf(self, step: Step) -> str:
        self._live()
        digits = step["digits"]
        await self.phone.execute("dtmf", {"call_id": self.call_id, "digits": digits})
        if step["wait"]:
            await self._sleep(sum(DTMF_PAUSE_S if d == "," else DTMF_DIGIT_S for d in digits))
        return f"sent {digits}"

    async def step_expect_dtmf(self, step: Step) -> str:
        wanted, within = step["digits"], step["within"]
        deadline = self.loop.time() + within
        events = self.events
        while True:
            got = "".join(events.digits[self._dtmf_seen:self._dtmf_seen + len(wanted)])
            if not wanted.startswith(got):
                self._dtmf_seen += len(got)
                raise StepFailed(f"got {got!r}, expected {wanted!r}")
            if got == wanted:
                self._dtmf_seen += len(got)
                return f"got {got}"
            left = deadline - self.loop.time()
            if left <= 0:
                self._dtmf_seen += len(got)
                raise StepFailed(f"got {got!r} of {wanted!r} within {within:g} s"
                                 if got else f"no DTMF within {within:g} s")
            events.digit_arrived.clear()
            waiter = asyncio.ensure_future(events.digit_arrived.wait())
            await asyncio.wait([waiter, events.ended], timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if events.ended.done() and len(events.digits) - self._dtmf_seen < len(wanted):
                self._live()

    async def _listen(self, step: Step, judge: Callable[[list[Frame]], Any],
                      expected: str) -> str:
        """Feed what arrives from now on to ``judge`` until it says yes or time is up;
        a failure says what was ``expected`` and what was heard instead."""
        self._live()
        monitor = self.monitor
        assert monitor is not None
        within = step["within"]
        deadline = self.loop.time() + within
        analyser = Analyser()
        frames: list[Frame] = []
        cursor = monitor.count
        judged = -JUDGE_EVERY
        while True:
            for index, t, pcm, rate in monitor.since(cursor):
                frames.append(analyser.frame(t, pcm, rate))
                cursor = index + 1
            left = deadline - self.loop.time()
            if len(frames) - judged >= JUDGE_EVERY or left <= 0:
                judged = len(frames)
                verdict = judge(frames)
                if verdict.ok:
                    return verdict.value
                if left <= 0:
                    raise StepFailed(f"{expected}: {verdict.value} within {within:g} s")
            monitor.arrived.clear()
            waiter = asyncio.ensure_future(monitor.arrived.wait())
            await asyncio.wait([waiter, self.events.ended], timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if self.events.ended.done():
                raise CallEnded(f"the call has ended: {self.events.end_text()}; until then "
                                f"{judge(frames).value}")

    async def step_expect_tone(self, step: Step) -> str:
        frequency, level, duration = step["frequency"], step["level"], step["duration"]
        tolerance = step["tolerance"] or max(10.0, 0.02 * frequency)
        return await self._listen(
            step, lambda frames: judge_tone(frames, frequency, tolerance, level, duration),
            f"no {frequency:g} Hz tone (±{tolerance:g} Hz, at least {level:g} dBFS, "
            f"{duration:g} s)")

    async def step_expect_speech(self, step: Step) -> str:
        level, duration = step["level"], step["duration"]
        return await self._listen(step, lambda frames: judge_speech(frames, level, duration),
                                  f"no speech ({duration:g} s at least {level:g} dBFS)")

    async def step_expect_silence(self, step: Step) -> str:
        level, duration = step["level"], step["duration"]
        return await self._listen(step, lambda frames: judge_silence(frames, level, duration),
                                  f"no silence ({duration:g} s at most {level:g} dBFS)")

    async def step_record(self, step: Step) -> str:
        self._live()
        path = step["file"].replace("{n}", str(self.result.number))
        task = asyncio.ensure_future(self._record(path, step["seconds"]))
        if not step["wait"]:
            self._recordings.append(_Recording(step, path, task, self.loop.time()))
            return f"recording {step['seconds']:g} s to {path}"
        try:
            seconds = await task
        except OSError as exc:
            raise StepFailed(_record_failure(path, exc)) from None
        return f"recorded {seconds:.2f} s to {path}"

    async def _record(self, path: str, seconds: float) -> float:
        monitor = self.monitor
        assert monitor is not None
        cursor = monitor.count
        written = 0.0
        out: wave.Wave_write | None = None
        rate = 0
        try:
            while written < seconds:
                for index, _, pcm, chunk_rate in monitor.since(cursor):
                    cursor = index + 1
                    if out is None:
                        rate = chunk_rate
                        out = wave.open(path, "wb")
                        out.setnchannels(1)
                        out.setsampwidth(2)
                        out.setframerate(rate)
                    if chunk_rate != rate:
                        continue  # a codec change mid-recording: keep the first rate
                    take = min(len(pcm) // 2, int(round((seconds - written) * rate)))
                    out.writeframes(pcm[:take * 2])
                    written += take / rate
                    if written >= seconds:
                        break
                if written >= seconds or self.events.ended.done():
                    break
                monitor.arrived.clear()
                waiter = asyncio.ensure_future(monitor.arrived.wait())
                await asyncio.wait([waiter, self.events.ended], timeout=1.0,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            if out is not None:
                out.close()
        if out is None:
            raise StepFailed("no audio arrived to record")
        return written

    async def step_transfer(self, step: Step) -> str:
        self._live()
        events = self.events
        seen = len(events.transfers)
        await self.phone.execute("transfer", {"call_id": self.call_id,
                                              "target": step["target"]})
        deadline = self.loop.time() + step["within"]
        while True:
            for t in events.transfers[seen:]:
                seen += 1
                if t.state == "succeeded":
                    await _bounded(events.ended, HANGUP_WAIT)  # our call ends with it
                    return f"transferred to {t.target}"
                if t.state in ("failed", "refused"):
                    why = f"{t.status} " if t.status else ""
                    raise StepFailed(f"the transfer to {t.target} {t.state}: {why}"
                                     f"{t.reason or ''}".rstrip(": "))
            left = deadline - self.loop.time()
            if left <= 0:
                raise StepFailed(f"the transfer did not complete within {step['within']:g} s")
            # the outcome comes by NOTIFY, even when the far end hangs up first (the
            # subscription outlives the call): wait for it, not for the call
            events.transfer_changed.clear()
            waiter = asyncio.ensure_future(events.transfer_changed.wait())
            await asyncio.wait([waiter], timeout=left)
            waiter.cancel()

    async def step_hold(self, step: Step) -> str:
        self._live()
        await self.phone.execute("hold", {"call_id": self.call_id})
        return "on hold"

    async def step_resume(self, step: Step) -> str:
        self._live()
        await self.phone.execute("resume", {"call_id": self.call_id})
        return "resumed"

    # ------------------------------------------------------------------ anywhere
    async def step_wait(self, step: Step) -> str:
        await self._sleep(step["seconds"])
        return f"waited {step['seconds']:g} s"

    async def step_hangup(self, step: Step) -> str:
        self._live()
        await self.phone.execute("hangup", {"call_id": self.call_id})
        await _bounded(self.events.ended, HANGUP_WAIT)
        return "hung up"

    async def step_expect_hangup(self, step: Step) -> str:
        within = step["within"]
        if not await self._until(self.events.ended, within):
            raise StepFailed(f"the far end did not hang up within {within:g} s")
        end = self.events.ended.result()
        if end.reason != "remote-hangup":
            raise StepFailed(f"the call ended otherwise: {self.events.end_text()}")
        return "the far end hung up"


def _record_failure(path: str, exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"cannot write {path}: {exc.strerror or exc}"
    return str(exc)


def _statuses(wanted: tuple[int, ...]) -> str:
    return " or ".join(str(s) for s in wanted)


async def _bounded(future: asyncio.Future, seconds: float) -> None:
    await asyncio.wait([future], timeout=seconds)


async def _wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``event`` was set meanwhile."""
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.wait([waiter], timeout=seconds)
    waiter.cancel()
    return event.is_set()
