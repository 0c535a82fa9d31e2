#!/usr/bin/env python3
"""The C excerpts in a guide match the example files they quote.

usage: snippets_test.py GUIDE.md REPO_ROOT

Every ```c block must follow a line 'From `docs/examples/NAME.c`:' (the last
such line before it names its file) and appear in that file verbatim, as
consecutive lines. Prints each block's result; exits 1 on any mismatch."""

import os
import re
import sys

guide, root = sys.argv[1], sys.argv[2]
text = open(guide).read()
failed = 0
source = None
blocks = 0
for m in re.finditer(r"From `(docs/examples/[\w.]+\.c)`:|^```c\n(.*?)^```", text, re.S | re.M):
    if m.group(1):
        source = m.group(1)
        continue
    blocks += 1
    line = text.count("\n", 0, m.start()) + 1
    if not source:
        print("FAILED %s:%d: a C excerpt without 'From `docs/examples/...`:' before it" % (guide, line))
        failed += 1
        continue
    body = open(os.path.join(root, source)).read()
    if m.group(2) in body:
        print("ok     %s:%d matches %s" % (guide, line, source))
    else:
        print("FAILED %s:%d does not match %s" % (guide, line, source))
        failed += 1
if blocks == 0:
    print("FAILED no C excerpt found")
    failed += 1
sys.exit(1 if failed else 0)
