#!/usr/bin/env python3
"""A program's --help and its manual page agree, and the page renders cleanly.

usage: man_test.py PROGRAM MAN_PAGE VERSION

Checks: `PROGRAM --help` exits 0 and prints to stdout; every option the
page's OPTIONS section lists appears in the help, and every option the help
names is in the page; an unknown option exits 2; the page's .TH names coil
VERSION; `man -l` renders it with no warning (groff -man when man-db is
absent). Prints one line per check and exits 1 if any failed."""

import os
import re
import shutil
import subprocess
import sys

prog, page, version = sys.argv[1:4]
failed = 0


def check(name, cond, detail=""):
    global failed
    print(("ok     " if cond else "FAILED ") + name + ("" if cond else "\n  " + str(detail)))
    failed += not cond


def options_in(text):
    """Long and short options (--name, -x) in plain text."""
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])", text))


src = open(page).read()
m = re.search(r"^\.SH OPTIONS\n(.*?)^\.SH ", src, re.S | re.M)
check("page has an OPTIONS section", m)
page_opts = options_in(m.group(1).replace("\\-", "-")) if m else set()
# The synopsis may name options too (--check, --help outside OPTIONS).
syn = re.search(r"^\.SH SYNOPSIS\n(.*?)^\.SH ", src, re.S | re.M)
page_opts |= options_in(syn.group(1).replace("\\-", "-")) if syn else set()

r = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=30)
check("--help exits 0", r.returncode == 0, r.returncode)
check("--help prints to stdout", r.stdout.strip() and not r.stderr.strip(), r.stderr)
help_opts = options_in(r.stdout)
check("page lists options", page_opts, page_opts)
check("every option of the page is in --help", page_opts <= help_opts,
      sorted(page_opts - help_opts))
check("every option of --help is in the page", help_opts <= page_opts,
      sorted(help_opts - page_opts))
r = subprocess.run([prog, "--no-such-option"], capture_output=True, text=True, timeout=30)
check("an unknown option exits 2 with the usage on stderr",
      r.returncode == 2 and "usage:" in r.stderr, (r.returncode, r.stderr))
th = re.search(r'^\.TH \S+ 1 \S+ "coil ([^"]+)"', src, re.M)
check(".TH names coil " + version, th and th.group(1) == version, th and th.group(1))

env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
if shutil.which("man"):
    cmd = ["man", "--warnings", "-E", "UTF-8", "-l", page]
else:
    cmd = ["groff", "-man", "-Tascii", "-ww", page]
r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
check("%s renders it" % cmd[0], r.returncode == 0 and "NAME" in r.stdout, r.returncode)
check("%s gives no warning" % cmd[0], not r.stderr.strip(), r.stderr)
sys.exit(1 if failed else 0)
