// Hands a folder to the page's folder input as Firefox itself does when a folder is dropped
// onto it: a Directory, which Firefox walks (in its parent process) into Files with
// webkitRelativePath, then fires input and change. WebDriver BiDi's input.setFiles takes
// files only, so this is how the test gives the page a real folder tree.
export class PcirFolderChild extends JSWindowActorChild {
  receiveMessage({ data }) {
    const input = this.document.getElementById(data.id);
    input.mozSetDndFilesAndDirectories([new this.contentWindow.Directory(data.path)]);
    return true;
  }
}
