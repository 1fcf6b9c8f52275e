"""masksearch.viewer: a static trajectory viewer for eval runs, verl dumps, SFT data and the learning report.

``masksearch view SRC... --out DIR`` reads the sources (:mod:`masksearch.viewer.sources`) into one
list of samples and writes a self-contained site (:mod:`masksearch.viewer.site`): ``index.html``
(filterable, sortable, paged table), ``sample.html#<key>`` (one trajectory: prompt, turns,
documents with the gold spans marked, reward parts, env stats), ``compare.html`` (``--compare A
B``) and ``learn.html`` (the learning report). No server and no network: the data travels as
``<script>`` files next to the pages, so the folder opens from disk.

Layer: consumer (imports core, rewards, env-level formats only; reads eval/sft outputs as files).
"""

from masksearch.viewer.site import BuildResult, build_site
from masksearch.viewer.sources import Sample, load_sources

__all__ = ["BuildResult", "Sample", "build_site", "load_sources"]
