#!/usr/bin/env python3
"""post.py - the soak's writer: posts text to POST /v1/train continuously.

usage: post.py PORT TOKEN_FILE SEQ_FILE [POSTS_PER_SECOND [SENTENCES]]

It posts POSTS_PER_SECOND (default 20; 0: as fast as answers come) times a
second. Each post is SENTENCES (default 20) English sentences made from
templates over several topics (royalty, animals, cities, food, science),
sent as text/plain with the write token on one keep-alive connection.
Every 202 answer's journal sequence number is appended to SEQ_FILE at
once (flushed), so the file lists exactly the acknowledged records even if
this process is killed. A 429 is honoured: the poster sleeps for its
Retry-After seconds and posts again. A refused or broken connection (the
daemon restarting) is counted and retried after a short pause. SIGTERM
stops it after the request in flight; it then prints one line:
"post: posts=N acked=N 429=N retry_after_s=N other=N conn_errors=N".
Only the standard library is used.
"""
import http.client
import json
import random
import signal
import sys
import time

TOPICS = [
    (["king", "queen", "prince", "princess", "duke", "emperor"],
     ["ruled", "crowned", "defended", "inherited", "governed"],
     ["the kingdom", "the throne", "the empire", "the palace", "the realm"]),
    (["cat", "dog", "horse", "wolf", "fox", "rabbit"],
     ["chased", "watched", "followed", "guarded", "hunted"],
     ["the field", "the forest", "the barn", "the river", "the meadow"]),
    (["mayor", "council", "citizen", "architect", "merchant"],
     ["built", "opened", "closed", "expanded", "rebuilt"],
     ["the bridge", "the station", "the square", "the port", "the road"]),
    (["cook", "baker", "chef", "farmer", "grocer", "waiter"],
     ["baked", "served", "sold", "cooked", "tasted"],
     ["the bread", "the soup", "the cheese", "the apples", "the rice"]),
    (["physicist", "chemist", "biologist", "engineer", "student"],
     ["measured", "studied", "explained", "tested", "published"],
     ["the theory", "the experiment", "the molecule", "the data",
      "the result"]),
]
LINKS = ["and", "while", "because", "after", "before"]


def sentence(rnd):
    subj, verbs, objs = rnd.choice(TOPICS)
    s = "the %s %s %s" % (rnd.choice(subj), rnd.choice(verbs),
                          rnd.choice(objs))
    if rnd.random() < 0.5:
        subj2, verbs2, objs2 = rnd.choice(TOPICS)
        s += " %s the %s %s %s" % (rnd.choice(LINKS), rnd.choice(subj2),
                                   rnd.choice(verbs2), rnd.choice(objs2))
    return s + " ."


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    port = int(sys.argv[1])
    with open(sys.argv[2]) as f:
        token = f.read().strip()
    out = open(sys.argv[3], "a")
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    per_post = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    next_at = time.monotonic()
    rnd = random.Random()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    n = {"posts": 0, "acked": 0, "429": 0, "retry_after_s": 0, "other": 0,
         "conn_errors": 0}
    conn = None
    headers = {"Authorization": "Bearer " + token,
               "Content-Type": "text/plain"}
    while not stop:
        if rate > 0:
            next_at += 1.0 / rate
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.monotonic()  # behind: no burst to catch up
        body = "\n".join(sentence(rnd) for _ in range(per_post)) + "\n"
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port,
                                                  timeout=30)
            conn.request("POST", "/v1/train", body.encode(), headers)
            r = conn.getresponse()
            data = r.read()
            n["posts"] += 1
        except (OSError, http.client.HTTPException):
            n["conn_errors"] += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.2)
            continue
        if r.status == 202:
            seq = json.loads(data)["result"]["seq"]
            out.write("%d\n" % seq)
            out.flush()
            n["acked"] += 1
        elif r.status == 429:
            n["429"] += 1
            wait = int(r.getheader("Retry-After", "1"))
            n["retry_after_s"] += wait
            time.sleep(wait)
        else:
            n["other"] += 1
            sys.stderr.write("post: status %d: %s\n"
                             % (r.status, data[:200]))
            time.sleep(0.2)
    print("post: " + " ".join("%s=%d" % kv for kv in n.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
