// A chosen folder as the same listing whichever way it was chosen: [{path, file}], with paths
// relative to the chosen folder. Three ways: showDirectoryPicker() (Chrome, Edge), the
// <input webkitdirectory> (Firefox, Safari), and dropping a folder onto the page (all).

export async function listDirectory(directory, prefix = '') {
  const entries = [];
  for await (const [name, handle] of directory.entries()) {
    if (handle.kind === 'file') entries.push({ path: prefix + name, file: await handle.getFile() });
    else entries.push(...await listDirectory(handle, `${prefix}${name}/`));
  }
  return entries;
}

export function listInput(files) {
  // webkitRelativePath begins with the chosen folder's own name; the listing does not.
  return Array.from(files, (file) => ({
    path: file.webkitRelativePath.split('/').slice(1).join('/') || file.name,
    file,
  }));
}

// The items of a drop must be taken while the drop event runs; walking them may wait.
export function dropRoots(dataTransfer) {
  return Array.from(dataTransfer.items, (item) => item.webkitGetAsEntry?.()).filter(Boolean);
}

export async function listDrop(roots) {
  const entries = [];
  if (roots.length === 1 && roots[0].isDirectory) {
    await walk(roots[0], '', entries);  // one folder dropped: paths relative to it
  } else {
    for (const root of roots) {
      if (root.isDirectory) await walk(root, `${root.name}/`, entries);
      else entries.push({ path: root.name, file: await fileOf(root) });
    }
  }
  return entries;
}

async function walk(directory, prefix, entries) {
  const reader = directory.createReader();
  // Chromium hands out at most 100 entries per readEntries() call: read until it gives none.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return;
    for (const entry of batch) {
      if (entry.isDirectory) await walk(entry, `${prefix}${entry.name}/`, entries);
      else entries.push({ path: prefix + entry.name, file: await fileOf(entry) });
    }
  }
}

function fileOf(entry) {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}
