<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1">
<context>
    <name>@default</name>
    <message>
        <location filename="../algorithms/superresolve.py" line="78"/>
        <source>A percentile stretch needs 0 &lt;= low &lt; high &lt;= 100 in Value range, got {} and {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="86"/>
        <source>Value mapping &apos;Fixed range&apos; needs the Value range: the input values that map to the model&apos;s darkest and brightest (for example 0 and 10000 for Sentinel-2 reflectance).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="95"/>
        <source>Value range: low ({}) must be below high ({}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="145"/>
        <source>Super-resolve raster layer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="151"/>
        <source>super-resolution,upscale,upsample,sharpen,diffusion,deep learning</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="184"/>
        <source>Input layer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="141"/>
        <source>Model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="653"/>
        <source>Bands</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="197"/>
        <source>Layer bands in the model&apos;s band order; empty: the first bands.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="161"/>
        <source>Value mapping</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="157"/>
        <source>Automatic (model card)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="157"/>
        <source>Fixed range</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="157"/>
        <source>Percentile stretch</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="211"/>
        <source>Value range (low, high)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="220"/>
        <source>Detail (0 fidelity .. 1 detail)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="230"/>
        <source>Extent</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="231"/>
        <source>QA layer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="235"/>
        <source>Model file (replaces Model)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="180"/>
        <source>Tile size (px)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="186"/>
        <source>Tile overlap (px)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="189"/>
        <source>Device</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="192"/>
        <source>Precision</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="261"/>
        <source>Runtime</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="284"/>
        <source>Super-resolved</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="289"/>
        <source>Consistency (QA)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="315"/>
        <source>The input &apos;{}&apos; is a vector layer; super-resolution needs a raster layer.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="326"/>
        <source>The model &apos;{}&apos; is not installed in the backend; installed: {}. Choose one of them, or give a .safetensors file as Model file.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="372"/>
        <source>The input could not be opened as a raster layer: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="383"/>
        <source>Band {} was requested, but the layer &apos;{}&apos; has only {} band(s); choose bands between 1 and {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="393"/>
        <source>The model file does not exist: {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="415"/>
        <source>The extent does not overlap the layer &apos;{}&apos; (after transforming it to the layer&apos;s CRS {}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="437"/>
        <source>The output must be a GeoTIFF (.tif) file, got {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="441"/>
        <source>The output would overwrite the input {}; choose another file.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="481"/>
        <source>The layer &apos;{}&apos; is not a file (provider &apos;{}&apos;); save it as a GeoTIFF first (Export &gt; Save As...) and super-resolve that file.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="490"/>
        <source>The layer &apos;{}&apos; is a sub-dataset or uses open options; save it as a GeoTIFF first and super-resolve that file.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="497"/>
        <source>The file behind the layer &apos;{}&apos; does not exist: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="513"/>
        <source>Super-resolving &apos;{}&apos; with model &apos;{}&apos;</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="532"/>
        <source>Backend {} (Python {}, pid {}) at {}, found via {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="559"/>
        <source>SlimDiffSR failed unexpectedly ({}: {}); see the log for details.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="685"/>
        <source>{} QA</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="646"/>
        <source>Tile {} of {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="648"/>
        <source>, about {} left</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="656"/>
        <source>{} s</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="658"/>
        <source>{} min</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="659"/>
        <source>{} h {} min</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="626"/>
        <source>Done.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="678"/>
        <source>Done: {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="57"/>
        <source>Create the backend with `bash scripts/setup_backend.sh` in a SlimDiffSR checkout (or `bash scripts/setup_backend.sh --runtime onnx` for the light ONNX Runtime backend), then point the plugin at that environment&apos;s Python in Raster &gt; SlimDiffSR &gt; Backend settings and check..., or set the environment variable {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="631"/>
        <source>Cancelled; no output was written.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="157"/>
        <source>The SlimDiffSR backend Python set by {} does not exist: {}. {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="164"/>
        <source>The SlimDiffSR backend Python set by {} is not executable: {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="188"/>
        <source>the environment variable {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="192"/>
        <source>the plugin setting &apos;Backend Python&apos;</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="196"/>
        <source>The SlimDiffSR project folder {} has no backend environment ({} is missing). Run `bash scripts/setup_backend.sh` there.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="203"/>
        <source>the project folder {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="206"/>
        <source>QGIS&apos;s own Python</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="207"/>
        <source>No SlimDiffSR backend is configured. {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="278"/>
        <source>Could not start the SlimDiffSR backend {} (found via {}): {}. {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="379"/>
        <source>The SlimDiffSR backend is not running.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="384"/>
        <source>The SlimDiffSR backend stopped accepting requests ({}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="454"/>
        <source>The SlimDiffSR backend was killed (SIGKILL) while working; this is most likely the system running out of memory. Try a smaller tile size, fp16 precision, or a smaller extent.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="463"/>
        <source>The SlimDiffSR backend was stopped by {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="471"/>
        <source>The Python at {} (found via {}) does not have SlimDiffSR installed. Install it there (`{} -m pip install slimdiffsr`) or choose the Python of a SlimDiffSR backend. {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="486"/>
        <source>The SlimDiffSR backend at {} (found via {}) did not start (exit code {}){}. {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="493"/>
        <source> Last message: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="494"/>
        <source>The SlimDiffSR backend stopped unexpectedly (exit code {}).{}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="503"/>
        <source>The SlimDiffSR backend at {} did not answer within {:.0f} s. {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="511"/>
        <source>{} does not speak the SlimDiffSR worker protocol (first message: {}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="520"/>
        <source>The SlimDiffSR backend {} speaks worker protocol {}, but this plugin ({}) needs protocol {}. Update the plugin and the backend to matching versions (in the backend: `{} -m pip install --upgrade slimdiffsr`, or pull the checkout and rerun `bash scripts/setup_backend.sh`).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="537"/>
        <source>Note: backend version {} differs from plugin version {}; the protocol matches, so they work together.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="577"/>
        <source>The SlimDiffSR backend did not answer a {} request in time.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="623"/>
        <source>The SlimDiffSR backend{} has no inference runtime: neither PyTorch (package torch) nor ONNX Runtime (package onnxruntime) is installed. Install one: `bash scripts/setup_backend.sh` (PyTorch, GPU capable), `bash scripts/setup_backend.sh --runtime onnx` (light, CPU), or `{} -m pip install onnxruntime` into the backend.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="673"/>
        <source> at {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="633"/>
        <source>SlimDiffSR cannot run with this input or these settings: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="634"/>
        <source>The model cannot be used: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="635"/>
        <source>The chosen device is not available: {} Choose Device &apos;auto&apos; or &apos;cpu&apos; (Advanced parameters), or check the GPU in Raster &gt; SlimDiffSR &gt; Backend settings and check...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="639"/>
        <source>The backend ran out of memory: {} Try a smaller tile size, fp16 precision, a smaller extent or the CPU.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="643"/>
        <source>The output could not be written: {} Check the folder exists, is writable and has space.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="648"/>
        <source>The SlimDiffSR backend failed unexpectedly: {} See the log for details.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="673"/>
        <source>The SlimDiffSR backend{} is missing the Python package &apos;{}&apos;; it was installed without its dependencies. Recreate it with `bash scripts/setup_backend.sh` (or `bash scripts/setup_backend.sh --runtime onnx`), or run `{} -m pip install slimdiffsr` there.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="684"/>
        <source>CUDA was requested, but the backend sees no CUDA GPU ({}). Choose Device &apos;auto&apos; or &apos;cpu&apos; (Advanced parameters), or install a CUDA build of PyTorch in the backend (`bash scripts/setup_backend.sh` on a machine with an NVIDIA driver) and check it in Raster &gt; SlimDiffSR &gt; Backend settings and check...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="863"/>
        <source>Invalid parameters for the backend: {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="35"/>
        <source>available</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="35"/>
        <source>not available</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="37"/>
        <source>Backend Python: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="38"/>
        <source>Found via:      {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="39"/>
        <source>SlimDiffSR:     {} (plugin {}, protocol {})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="44"/>
        <source>Python:         {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="45"/>
        <source>PyTorch:        {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="45"/>
        <source>not installed</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="50"/>
        <source>Runtimes:       {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="51"/>
        <source>CUDA:           {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="54"/>
        <source>Devices:</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="60"/>
        <source>Models ({}):</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="62"/>
        <source> [default]</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="64"/>
        <source>Models folder:  {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="65"/>
        <source>Output folder:  {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="76"/>
        <source>SlimDiffSR backend</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="80"/>
        <source>SlimDiffSR runs in its own Python environment (PyTorch or ONNX Runtime). It is found in this order: ${}, the Backend Python below, the .venv of the project folder below, QGIS&apos;s own Python if it has slimdiffsr.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="95"/>
        <source>Backend Python</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="99"/>
        <source>Project folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="103"/>
        <source>Models folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="106"/>
        <source>Check backend</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="134"/>
        <source>Checking the backend...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="145"/>
        <source>Problem: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="147"/>
        <source>Backend log:</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../check_dialog.py" line="156"/>
        <source>SlimDiffSR: check backend</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="96"/>
        <source>SlimDiffSR</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="127"/>
        <source>Layer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="131"/>
        <source>Import...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="132"/>
        <source>Copy a .safetensors model file into the models folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="134"/>
        <source>Refresh</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="135"/>
        <source>Ask the backend for its installed models</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="149"/>
        <source>Band mapping</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="153"/>
        <source>Options</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="172"/>
        <source>Range</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="215"/>
        <source>Also write the consistency (QA) layer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="220"/>
        <source>Output file</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="225"/>
        <source>Output folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="226"/>
        <source>Temporary files (gone when QGIS closes)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="241"/>
        <source>Run</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="243"/>
        <source>Preview current view</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="244"/>
        <source>Super-resolve only the map canvas extent, with a bicubic preview to compare</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="248"/>
        <source>Cancel</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="254"/>
        <source>Show the bicubic preview instead (compare)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="255"/>
        <source>Flip between the model&apos;s preview and plain bicubic interpolation of the same view</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="274"/>
        <source>Log</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../plugin.py" line="44"/>
        <source>Backend settings and check...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="290"/>
        <source> (default)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="307"/>
        <source>Asking the backend for its models...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="317"/>
        <source>Backend not available: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="324"/>
        <source>Backend {} at {}: {} model(s).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="330"/>
        <source>SlimDiffSR: list models</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="344"/>
        <source>Import a SlimDiffSR model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="344"/>
        <source>SlimDiffSR models (*.safetensors)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="356"/>
        <source>Import failed: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="361"/>
        <source>Imported model {} into {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="379"/>
        <source>All bands of the layer (this model takes any).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="401"/>
        <source>Percentiles</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="406"/>
        <source>Values</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="437"/>
        <source>[temporary file]</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="439"/>
        <source>[new file in {}]</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="487"/>
        <source>SlimDiffSR: plan</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="545"/>
        <source>Choose a raster layer first.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="549"/>
        <source>Pick a layer band for every band the model expects.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="585"/>
        <source>the current view of </source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="586"/>
        <source>Running on {}&apos;{}&apos; with {}...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="587"/>
        <source>Starting the backend...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="596"/>
        <source>Cancelling...</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="628"/>
        <source>Failed; see the log.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="632"/>
        <source>Cancelled.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="668"/>
        <source>preview</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="671"/>
        <source>The result {} could not be opened.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="689"/>
        <source>Added &apos;{}&apos; to the group {}: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="31"/>
        <source>The model file does not exist: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="36"/>
        <source>{} is not a model file: it is too short.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="39"/>
        <source>{} is not a safetensors model file.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="42"/>
        <source>{} is not a safetensors model file ({}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="47"/>
        <source>{} is a safetensors file without a SlimDiffSR model card; convert published checkpoints with `slimdiffsr convert` first.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="56"/>
        <source>The model card in {} is not valid JSON ({}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="60"/>
        <source>The model card in {} lacks its name or scale.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="68"/>
        <source>The model card in {} has an empty name.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="88"/>
        <source>the raster&apos;s own range</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="92"/>
        <source>bands: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="92"/>
        <source>any</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="93"/>
        <source>values: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="94"/>
        <source>license: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../modelfiles.py" line="94"/>
        <source>unknown</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../plugin.py" line="39"/>
        <source>SlimDiffSR panel</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../plugin.py" line="42"/>
        <source>Show the SlimDiffSR super-resolution panel</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../provider.py" line="23"/>
        <source>SlimDiffSR super-resolution</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../results.py" line="30"/>
        <source>{} SR x{} ({})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="766"/>
        <source>: layer bands {} in</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="768"/>
        <source>, {} band(s) out</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="770"/>
        <source> (bands {} bicubic)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="755"/>
        <source>see Value mapping</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="777"/>
        <source>{} tile(s)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="779"/>
        <source>, about {} at the last run&apos;s speed</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="653"/>
        <source>choose Value mapping &apos;Fixed range&apos;</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../backend.py" line="653"/>
        <source>Device &apos;cpu&apos;</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="241"/>
        <source>Tile size (px, 0 = automatic)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="249"/>
        <source>Tile overlap (px, 0 = automatic)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="183"/>
        <source>Automatic</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="271"/>
        <source>Self-ensemble (copies per tile, each one run more; 1 = off)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/superresolve.py" line="155"/>
        <source>&lt;p&gt;Writes a super-resolved copy of a raster layer as a GeoTIFF: same CRS and extent, pixel size divided by the model&apos;s scale (x4 or x8), same data type and nodata. Only &lt;b&gt;Input layer&lt;/b&gt; is needed; the result goes to the SlimDiffSR output folder unless you choose a file or a temporary file.&lt;/p&gt;&lt;p&gt;&lt;b&gt;Model&lt;/b&gt;: the models installed in the backend ({}). The default, slimdiffsr-nano-x4, expects red, green and blue; bicubic-x4 and bicubic-x8 are plain interpolation to compare against. Advanced: &lt;b&gt;Model file&lt;/b&gt; runs a .safetensors model file instead.&lt;/p&gt;&lt;p&gt;&lt;b&gt;Bands&lt;/b&gt;: the layer bands to feed the model, in the model&apos;s band order (for Sentinel-2 RGB: 4, 3, 2). Empty: the first bands, as many as the model expects.&lt;/p&gt;&lt;p&gt;&lt;b&gt;Value mapping&lt;/b&gt;: how pixel values are scaled for the model. Automatic uses the model card and the data type; &lt;i&gt;Fixed range&lt;/i&gt; maps Value range low..high (for example 0..10000 for Sentinel-2 reflectance); &lt;i&gt;Percentile stretch&lt;/i&gt; maps the raster&apos;s Value range percentiles (default 2..98), computed once per raster.&lt;/p&gt;&lt;p&gt;&lt;b&gt;Extent&lt;/b&gt; restricts the run to an area (any CRS). &lt;b&gt;QA layer&lt;/b&gt; also writes how far the result, shrunk back, departs from the input. &lt;b&gt;Self-ensemble&lt;/b&gt; (Advanced) averages the model over 2, 4 or 8 flipped and rotated copies of each tile: that many times slower, slightly more faithful.&lt;/p&gt;&lt;p&gt;The work runs in the SlimDiffSR backend, a separate Python environment; set it up and check it in &lt;i&gt;Raster &amp;gt; SlimDiffSR &amp;gt; Backend settings and check...&lt;/i&gt;. The same tool with a preview and a progress bar per tile is in &lt;i&gt;Raster &amp;gt; SlimDiffSR &amp;gt; SlimDiffSR panel&lt;/i&gt;. Lower the tile size (Advanced) if the GPU runs out of memory.&lt;/p&gt;</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="198"/>
        <source>0 = the fidelity default; 1 = the perceptual model (more texture); between blends their weights. Default model only</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="204"/>
        <source>Fidelity .. detail</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="207"/>
        <source>Off</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="207"/>
        <source>{} copies</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="208"/>
        <source>Average the model over flipped and rotated copies of each tile: that many times slower, slightly more faithful</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../dock.py" line="214"/>
        <source>Self-ensemble</source>
        <translation type="unfinished"></translation>
    </message>
</context>
</TS>
