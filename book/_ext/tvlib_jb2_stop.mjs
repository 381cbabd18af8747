// Stops Jupyter Book 2.x and mystmd (`jupyter-book build`, `start`, `init`; `myst build`, ...) with
// the reason and the way to build this book, and a non-zero exit status. They load this file
// because myst.yml names it as a plugin; Jupyter Book 1.x, which builds the book, reads neither.
// Without it Jupyter Book 2 prints hundreds of errors (glue:text, glue:figure, eval-rst) and
// exits 0. mystmd turns an exception raised while importing a plugin into a warning and goes on,
// so the plugin ends the process itself. tests/test_jb2.py checks the message and the wiring.
const MESSAGE = [
  "This book is built with Jupyter Book 1.x (Sphinx); the command you ran is Jupyter Book 2.x",
  "or mystmd, a different tool. Build the book with `bash .ci/run book`, or run",
  "`pip install -e '.[book]'` (it pins jupyter-book 1.x and the Sphinx extensions the book uses)",
  "and then `jupyter-book build .`. Jupyter Book 2 does not read the book's _config.yml and",
  "_toc.yml (it reads myst.yml, which is here only to stop it), cannot render the chapters'",
  "glue:figure and glue:text outputs (myst-nb) nor the eval-rst API reference (Sphinx autodoc),",
  "and downloads its site theme at build time; its `init` would rename _config.yml and _toc.yml",
  "to hidden backups. To try a migration anyway, work on a copy without myst.yml.",
].join("\n");

process.stderr.write(`\n${MESSAGE}\n\n`);
process.exit(1);
