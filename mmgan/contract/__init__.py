"""The plugin contract: what a modality declares (``modality``), the modality object (``plugin``), the hook
specs (``hookspecs``) and the plugin manager that finds plugins through entry points (``manager``)."""
