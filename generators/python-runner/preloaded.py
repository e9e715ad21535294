"""The modules a `.py` generator may import.

componentize-py snapshots the interpreter when the runner is built, and only modules
imported by then exist at run time: this list is what legacy generators import (the
standard library plus PyYAML, which prometheus-http-sd itself depends on). A module
missing here is a `ModuleNotFoundError` naming it; add it here to make it available.

`ssl` and `ctypes` do not exist in this interpreter; `socket`, `subprocess`, files and
environment variables import but reach nothing: the sandbox grants no sockets, no
processes, no files and no environment. Outbound HTTP goes through `urllib.request` or
`requests` (see httpshim), to the hosts the generator's manifest allows.
"""

# ruff: noqa: F401
import abc
import argparse
import array
import base64
import binascii
import bisect
import calendar
import collections
import collections.abc
import concurrent.futures
import contextlib
import copy
import csv
import dataclasses
import datetime
import decimal
import difflib
import email.message
import email.utils
import enum
import errno
import fnmatch
import fractions
import functools
import glob
import gzip
import hashlib
import heapq
import hmac
import html
import html.parser
import http
import http.client
import io
import ipaddress
import itertools
import json
import keyword
import linecache
import locale
import logging
import logging.handlers
import math
import numbers
import operator
import os
import os.path
import pathlib
import pprint
import queue
import random
import re
import secrets
import shlex
import socket
import statistics
import string
import struct
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import types
import typing
import unicodedata
import urllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
import weakref
import xml.etree.ElementTree
import zlib

import yaml
import httpsd
import requests
import requests.auth
import requests.exceptions
