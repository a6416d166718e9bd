"""The robot's pieces in one process, without argv: a Robot built from a config dict,
its queue policy, the one story-settings merge, and the story worker telling a real
story (tiny seeded model, real kernel) to a real control-socket client."""
import json
import os
import socket
import time

import pytest

from robot import config, procinfo, story
from robot.errors import StorybotError
from robot.kernel.engine import Model
from robot.service import control
from robot.service.daemon import Robot, ServeOptions
from robot.service.jobs import Job, JobQueue, QueuePolicy
from robot.service.modelwatch import WatchedModel
from robot.service.worker import StoryWorker, job_settings


def make_cfg(**daemon):
    cfg = config.defaults()
    cfg["daemon"].update(socket="", stdin=False, **daemon)
    return cfg


def test_a_robot_is_built_from_a_config_object():
    cfg = make_cfg(on_new_prompt="queue", queue_max=2)
    robot = Robot(cfg, ServeOptions(story_layer={"steps": 9}))
    assert robot.socket_path == "" and robot.server is None and robot.options.story_layer == {"steps": 9}
    assert robot.status_line() == "waiting for a prompt (0 stories told)"
    jobs = [Job(f"prompt {i}", "test") for i in range(3)]
    for job in jobs:
        robot.submit(job)
    # queue mode: two wait their turn, the third is refused
    assert [j.id for j in robot.queue.pending] == [jobs[0].id, jobs[1].id]
    assert robot.stop(drop_queue=True) == (None, [jobs[0].id, jobs[1].id])
    assert not robot.queue.pending


def test_interrupt_mode_replaces_what_waits():
    q = JobQueue(QueuePolicy("interrupt", 8), Robot(make_cfg()).log)
    first, second = Job("a", "test"), Job("b", "test")
    q.submit(first)
    q.submit(second)
    assert list(q.pending) == [second]
    assert q.close("shutdown") == [second] and q.stopping
    late = Job("c", "test")
    q.submit(late)
    assert not q.pending


def test_story_settings_merge_once():
    cfg = config.defaults()
    s = story.StorySettings.merge(cfg, {"steps": 40, "seed": None}, {"seed": 7, "topp": None})
    assert s == story.StorySettings(40, 1.0, 0.9, 7)
    warned = []
    r = s.resolve(32, warn=warned.append)
    assert r.steps == 32 and r.seed == 7 and warned
    assert story.StorySettings(steps=0).resolve(32).steps == 32
    # seed 0: a new story every time, from random bits rather than the clock
    seeds = {story.StorySettings(seed=0).resolve(32).seed for _ in range(4)}
    assert len(seeds) == 4 and 0 not in seeds
    with pytest.raises(StorybotError):
        story.StorySettings(seed=-1).resolve(32)
    with pytest.raises(StorybotError):
        story.StorySettings(topp=1.5).resolve(32)


def test_worker_tells_a_story_to_a_socket_client(tiny):
    model_path, tok = tiny
    robot = Robot(make_cfg())
    models = WatchedModel(story.ModelFiles(model_path, tok), robot.log)
    models.load()
    wakes = []
    settings = job_settings(lambda: robot.cfg, {}, robot.log)
    worker = StoryWorker(robot.queue, models, None, robot.log, False, settings, lambda: wakes.append(1))
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = control.Client(ours, (os.getpid(), os.getuid(), os.getgid()), lambda: wakes.append(2))
    worker.start()
    robot.queue.submit(Job("Once", "test", client, {"steps": 20, "seed": 3}))
    data = b""
    theirs.settimeout(60)
    while b'"event": "summary"' not in data:
        data += theirs.recv(65536)
    # the worker asks for the socket to be closed (and wakes the main loop, here: us)
    for _ in range(6000):
        if client.closing:
            break
        time.sleep(0.01)
    assert client.done(0.0) and 2 in wakes
    client.shut()
    assert theirs.recv(10) == b""
    events = [json.loads(line) for line in data.decode().splitlines()]
    assert [e["event"] for e in events][:2] == ["queued", "started"] and events[-1]["event"] == "summary"
    text = "".join(e["text"] for e in events if e["event"] == "token")
    expect = "".join(t.text for t in Model(model_path, tok).generate("Once", steps=20, seed=3))
    assert text == expect and events[-1]["seed"] == 3 and events[-1]["stop"] in ("steps", "bos")
    assert worker.counters.told == 1 and wakes
    robot.queue.close("shutdown")
    assert worker.join(5)


def test_procinfo_reads_this_process():
    mem = procinfo.memory()
    assert mem.rss_kb > 0 and mem.peak_kb >= mem.rss_kb
