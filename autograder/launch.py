"""Launch links of a chapter page: open in Colab, launch on Binder, download the notebook.

Each link points at the chapter's *student* notebook as committed in the course's repository,
``notebooks/<NN>_<slug>.ipynb`` (stubs, no outputs, and a setup cell that installs the learner
kit; the Chinese edition's in ``notebooks/zh/``). Jupyter Book's own launch buttons would point at the page's source, the generated
``book/chapters/*.ipynb`` that is not in the repository. The repository is named once, in
``_config.yml`` (``repository.url`` and ``repository.branch``): the *public* repository, where the
public edition (``make public``, :mod:`autograder.public`) is published, never the teaching repository,
which holds the answer key and stays private.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

NOTEBOOKS = "notebooks"  # the folder of committed student notebooks, relative to the repository root


@dataclass(frozen=True)
class LaunchLinks:
    notebook: str  # path in the repository, e.g. "notebooks/02_attention.ipynb"
    colab: str
    binder: str

    def markdown(self, lang: str = "en") -> str:
        """A MyST paragraph for the top of the chapter page; the download is a Sphinx
        ``{download}`` role, so the built book ships the notebook file itself."""
        if lang == "zh":
            return (
                f"[在 Colab 中打开]({self.colab}) · [在 Binder 中启动]({self.binder}) · "
                f"{{download}}`下载笔记本 </{self.notebook}>`"
                "（学生版：练习留空，第一个单元格会安装课程的工具包）"
            )
        return (
            f"[Open in Colab]({self.colab}) · [Launch Binder]({self.binder}) · "
            f"{{download}}`Download the notebook </{self.notebook}>` "
            "(the student version: empty exercises and a setup cell that installs the course's kit)"
        )


def launch_links(chapter_name: str, config: Path = Path("_config.yml"), lang: str = "en") -> LaunchLinks:
    repository = yaml.safe_load(Path(config).read_text())["repository"]
    url, branch = repository["url"].rstrip("/"), repository.get("branch", "main")
    owner_and_name = url.removeprefix("https://github.com/")
    if owner_and_name == url or owner_and_name.count("/") != 1:
        raise ValueError(f"repository.url in {config} is not a GitHub repository URL: {url}")
    notebook = f"{NOTEBOOKS}/{chapter_name}.ipynb" if lang == "en" else f"{NOTEBOOKS}/{lang}/{chapter_name}.ipynb"
    return LaunchLinks(
        notebook=notebook,
        colab=f"https://colab.research.google.com/github/{owner_and_name}/blob/{branch}/{notebook}",
        binder=f"https://mybinder.org/v2/gh/{owner_and_name}/{branch}?labpath={notebook}",
    )
