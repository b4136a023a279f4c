"""A report as data (sections of text, lists, tables and images) rendered to Markdown and to one self-contained
HTML page: the adversarial report and the data report share it."""

from __future__ import annotations

import base64
import html
from pathlib import Path

# A report is a list of sections (title, blocks); a block is ("text", str), ("list", [str]),
# ("table", DataFrame) or ("image", alt text, path relative to the report).
Block = tuple


def to_markdown(title: str, sections: list[tuple[str, list[Block]]]) -> str:
    out = [f"# {title}"]
    for heading, blocks in sections:
        out.append(f"## {heading}")
        for kind, *content in blocks:
            if kind == "text":
                out.append(content[0])
            elif kind == "list":
                out.append("\n".join(f"- {line}" for line in content[0]))
            elif kind == "table":
                out.append(content[0].to_markdown(index=False, floatfmt=".4g"))
            else:
                out.append(f"![{content[0]}]({content[1]})")
    return "\n\n".join(out) + "\n"


def to_html(title: str, sections: list[tuple[str, list[Block]]], images_dir: Path) -> str:
    """A self-contained page: every image (found by file name in images_dir) is embedded as base64."""
    parts = []
    for heading, blocks in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for kind, *content in blocks:
            if kind == "text":
                parts.append(f"<p>{html.escape(content[0])}</p>")
            elif kind == "list":
                parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in content[0]) + "</ul>")
            elif kind == "table":
                parts.append(content[0].to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
            else:
                data = base64.b64encode((images_dir / Path(content[1]).name).read_bytes()).decode()
                parts.append(f'<figure><img alt="{html.escape(content[0])}" src="data:image/png;base64,{data}">'
                             f"<figcaption>{html.escape(content[0])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:90%;display:block;overflow-x:auto}"
             "td,th{border:1px solid #ccc;padding:3px 6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}"
            f"</style></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>\n")
